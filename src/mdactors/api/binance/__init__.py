"""Binance's spot market-data API: REST under /api/v3 and the WebSocket streams."""
