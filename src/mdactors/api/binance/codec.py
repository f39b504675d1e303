"""Binance spot market-data shapes, sans I/O: REST bodies and WebSocket events.

Field names and types follow Binance's documentation: prices and quantities
are decimal strings with 8 places (``"43000.01000000"``), times are epoch
milliseconds. Pure functions over value types; :mod:`mdactors.api.binance.rest`
and :mod:`mdactors.api.binance.streams` wire them to the market.

Trade ids: the prints made before start-up (:mod:`mdactors.domain.trade_backfill`)
take ids ``1..TRADE_ID_BASE``; the live prints follow them without holes
(``TRADE_ID_BASE`` + the tape's id, :func:`~mdactors.domain.tick.last_trade_id`).
Order book update ids are tick sequences: the book at tick ``n`` has
``lastUpdateId`` ``n``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mdactors.api.binance.symbols import BinanceMarket
from mdactors.api.codec import dumps
from mdactors.domain.book import Level, OrderBook
from mdactors.domain.klines import Kline
from mdactors.domain.stats import RollingStats
from mdactors.domain.tick import Tick, Trade, last_trade_id, trade_of
from mdactors.domain.trade_backfill import TRADE_ID_BASE

__all__ = [
    "TRADE_ID_BASE",
    "agg_trade_body",
    "agg_trade_event",
    "agg_trade_json",
    "all_tickers_event",
    "book_ticker_event",
    "book_ticker_json",
    "combined",
    "decimal",
    "depth_json",
    "depth_update_event",
    "exchange_info",
    "kline_event",
    "kline_row",
    "lot_size_filter",
    "min_notional_of",
    "mini_ticker_body",
    "mini_ticker_event",
    "partial_depth_event",
    "places_of",
    "price_filter",
    "symbol_info",
    "tick_print",
    "ticker_24hr_json",
    "ticker_body",
    "ticker_event",
    "top_of_book",
    "trade_body",
    "trade_event",
    "trade_json",
]

_PLACES = 8
RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
]


def decimal(value: float, places: int = _PLACES) -> str:
    """A price or quantity as Binance writes it: fixed-point, 8 places (more if needed)."""
    return f"{value:.{places}f}"


def _places(decimals: int) -> int:
    return max(_PLACES, decimals)


def places_of(market: BinanceMarket) -> tuple[int, int]:
    """The decimal places of ``market``'s prices and quantities on the wire."""
    spec = market.spec
    return _places(spec.price_decimals), _places(spec.qty_decimals)


def min_notional_of(market: BinanceMarket) -> float:
    """Ten ticks' worth of one lot, at least 1 unit of quote."""
    spec = market.spec
    return max(1.0, round(spec.seed_price * spec.lot_size * 10, spec.price_decimals))


def price_filter(market: BinanceMarket) -> dict[str, Any]:
    """``PRICE_FILTER``: ``tickSize`` is the symbol's tick size."""
    tick, places = market.spec.tick_size, places_of(market)[0]
    return {
        "filterType": "PRICE_FILTER",
        "minPrice": decimal(tick, places),
        "maxPrice": decimal(10_000_000.0, places),
        "tickSize": decimal(tick, places),
    }


def lot_size_filter(market: BinanceMarket, kind: str = "LOT_SIZE") -> dict[str, Any]:
    """``LOT_SIZE`` (or ``MARKET_LOT_SIZE``): ``stepSize`` is the symbol's lot size."""
    lot, places = market.spec.lot_size, places_of(market)[1]
    return {
        "filterType": kind,
        "minQty": decimal(lot, places),
        "maxQty": decimal(9_000_000.0, places),
        "stepSize": decimal(lot, places),
    }


# --------------------------------------------------------------------------- exchangeInfo


def symbol_info(market: BinanceMarket) -> dict[str, Any]:
    """One ``exchangeInfo`` symbol: status, assets, precisions and filters.

    ``PRICE_FILTER.tickSize`` is the symbol's tick size and ``LOT_SIZE.stepSize``
    its lot size; the minimum notional is ten ticks' worth of one lot, at
    least 1 unit of quote.
    """
    price_places, qty_places = places_of(market)
    min_notional = min_notional_of(market)
    return {
        "symbol": market.name,
        "status": "TRADING",
        "baseAsset": market.base,
        "baseAssetPrecision": qty_places,
        "quoteAsset": market.quote,
        "quotePrecision": price_places,
        "quoteAssetPrecision": price_places,
        "baseCommissionPrecision": qty_places,
        "quoteCommissionPrecision": price_places,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": False,
        "amendAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            price_filter(market),
            lot_size_filter(market),
            {
                "filterType": "MIN_NOTIONAL",
                "minNotional": decimal(min_notional, price_places),
                "applyToMarket": True,
                "avgPriceMins": 5,
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": decimal(min_notional, price_places),
                "applyMinToMarket": True,
                "maxNotional": decimal(9_000_000_000.0, price_places),
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "NONE",
        "allowedSelfTradePreventionModes": ["NONE"],
    }


def exchange_info(markets: Sequence[BinanceMarket], server_time_ms: int) -> dict[str, Any]:
    """The ``exchangeInfo`` body for ``markets``."""
    return {
        "timezone": "UTC",
        "serverTime": server_time_ms,
        "rateLimits": RATE_LIMITS,
        "exchangeFilters": [],
        "symbols": [symbol_info(market) for market in markets],
    }


# --------------------------------------------------------------------------- books


def _levels(levels: Sequence[Level], price_places: int, qty_places: int) -> list[list[str]]:
    return [[decimal(price, price_places), decimal(qty, qty_places)] for price, qty in levels]


def depth_json(market: BinanceMarket, book: OrderBook, limit: int) -> dict[str, Any]:
    """``GET /api/v3/depth``: the top ``limit`` levels, ``lastUpdateId`` = the book's tick."""
    spec = market.spec
    pp, qp = _places(spec.price_decimals), _places(spec.qty_decimals)
    return {
        "lastUpdateId": book.seq,
        "bids": _levels(book.bids[:limit], pp, qp),
        "asks": _levels(book.asks[:limit], pp, qp),
    }


def depth_update_event(
    market: BinanceMarket,
    first_id: int,
    last_id: int,
    event_ms: int,
    bids: Sequence[Level],
    asks: Sequence[Level],
) -> bytes:
    """``<symbol>@depth[@100ms]``: a diff covering updates ``first_id..last_id`` (``U``..``u``)."""
    spec = market.spec
    pp, qp = _places(spec.price_decimals), _places(spec.qty_decimals)
    return dumps(
        {
            "e": "depthUpdate",
            "E": event_ms,
            "s": market.name,
            "U": first_id,
            "u": last_id,
            "b": _levels(bids, pp, qp),
            "a": _levels(asks, pp, qp),
        }
    )


def partial_depth_event(market: BinanceMarket, book: OrderBook, levels: int) -> bytes:
    """``<symbol>@depth<levels>[@100ms]``: the top ``levels`` of the book."""
    return dumps(depth_json(market, book, levels))


# --------------------------------------------------------------------------- trades


def _is_buyer_maker(trade: Trade) -> bool:
    # A sell print hit the bid: the buyer was resting (maker).
    return trade.side == "sell"


def trade_json(trade: Trade, trade_id: int, price_places: int, qty_places: int) -> dict[str, Any]:
    """One row of ``GET /api/v3/trades``."""
    return {
        "id": trade_id,
        "price": decimal(trade.price, price_places),
        "qty": decimal(trade.quantity, qty_places),
        "quoteQty": decimal(trade.price * trade.quantity, price_places),
        "time": trade.ts_ns // 1_000_000,
        "isBuyerMaker": _is_buyer_maker(trade),
        "isBestMatch": True,
    }


def agg_trade_json(
    trade: Trade, trade_id: int, price_places: int, qty_places: int
) -> dict[str, Any]:
    """One row of ``GET /api/v3/aggTrades`` (every print is its own aggregate)."""
    return {
        "a": trade_id,
        "p": decimal(trade.price, price_places),
        "q": decimal(trade.quantity, qty_places),
        "f": trade_id,
        "l": trade_id,
        "T": trade.ts_ns // 1_000_000,
        "m": _is_buyer_maker(trade),
        "M": True,
    }


def tick_print(tick: Tick) -> tuple[Trade, int] | None:
    """The print of ``tick`` with its public trade id (``TRADE_ID_BASE`` + its id on
    the tape), or ``None`` for a tick that did not print."""
    trade = trade_of(tick)
    return None if trade is None else (trade, TRADE_ID_BASE + trade.id)


def trade_body(market: BinanceMarket, trade: Trade, trade_id: int) -> dict[str, Any]:
    """The ``<symbol>@trade`` event as a dict."""
    row = trade_json(trade, trade_id, *places_of(market))
    return {
        "e": "trade",
        "E": row["time"],
        "s": market.name,
        "t": trade_id,
        "p": row["price"],
        "q": row["qty"],
        "T": row["time"],
        "m": row["isBuyerMaker"],
        "M": True,
    }


def trade_event(market: BinanceMarket, trade: Trade, trade_id: int) -> bytes:
    """``<symbol>@trade``."""
    return dumps(trade_body(market, trade, trade_id))


def agg_trade_body(market: BinanceMarket, trade: Trade, trade_id: int) -> dict[str, Any]:
    """The ``<symbol>@aggTrade`` event as a dict."""
    row = agg_trade_json(trade, trade_id, *places_of(market))
    return {"e": "aggTrade", "E": row["T"], "s": market.name, **row}


def agg_trade_event(market: BinanceMarket, trade: Trade, trade_id: int) -> bytes:
    """``<symbol>@aggTrade``."""
    return dumps(agg_trade_body(market, trade, trade_id))


# --------------------------------------------------------------------------- klines


def kline_row(kline: Kline, price_places: int, qty_places: int) -> list[Any]:
    """One row of ``GET /api/v3/klines``: all 12 columns.

    Quote volume is approximated as volume × the typical price (H+L+C)/3; no
    side of the simulated tape is a taker, so the taker columns are half the
    volume (a balanced market).
    """
    quote_volume = kline.volume * (kline.high + kline.low + kline.close) / 3.0
    return [
        kline.start_ms,
        decimal(kline.open, price_places),
        decimal(kline.high, price_places),
        decimal(kline.low, price_places),
        decimal(kline.close, price_places),
        decimal(kline.volume, qty_places),
        kline.end_ms - 1,
        decimal(quote_volume, price_places),
        kline.trades,
        decimal(kline.volume / 2.0, qty_places),
        decimal(quote_volume / 2.0, price_places),
        "0",
    ]


def kline_event(
    market: BinanceMarket, interval: str, kline: Kline, event_ms: int, first_id: int, last_id: int
) -> bytes:
    """``<symbol>@kline_<interval>``; ``k.x`` is true on the update that closes the candle."""
    spec = market.spec
    row = kline_row(kline, _places(spec.price_decimals), _places(spec.qty_decimals))
    return dumps(
        {
            "e": "kline",
            "E": event_ms,
            "s": market.name,
            "k": {
                "t": row[0],
                "T": row[6],
                "s": market.name,
                "i": interval,
                "f": first_id,
                "L": last_id,
                "o": row[1],
                "c": row[4],
                "h": row[2],
                "l": row[3],
                "v": row[5],
                "n": kline.trades,
                "x": kline.closed,
                "q": row[7],
                "V": row[9],
                "Q": row[10],
                "B": "0",
            },
        }
    )


# --------------------------------------------------------------------------- tickers


def top_of_book(book: OrderBook) -> tuple[Level, Level]:
    """The best bid and ask levels (price, quantity) of ``book``."""
    return (book.bids[0] if book.bids else (0.0, 0.0)), book.asks[0]


def ticker_24hr_json(
    market: BinanceMarket, tick: Tick, stats: RollingStats, top: tuple[Level, Level]
) -> dict[str, Any]:
    """``GET /api/v3/ticker/24hr`` for one symbol at ``tick``, ``top`` its book's best levels.

    The weighted average price is the window's typical price (O+H+L+C)/4 (no
    per-print volume is kept for 24h); the trades counted are every print
    since the backfill began (``firstId`` 1).
    """
    spec = market.spec
    pp, qp = _places(spec.price_decimals), _places(spec.qty_decimals)
    weighted = (stats.open + stats.high + stats.low + stats.last) / 4.0
    (bid, bid_qty), (ask, ask_qty) = top
    first_id, last_id = 1, TRADE_ID_BASE + last_trade_id(tick)
    return {
        "symbol": market.name,
        "priceChange": decimal(stats.change, pp),
        "priceChangePercent": f"{stats.change_pct:.3f}",
        "weightedAvgPrice": decimal(weighted, pp),
        "prevClosePrice": decimal(stats.open, pp),
        "lastPrice": decimal(tick.price, pp),
        "lastQty": decimal(tick.volume, qp),
        "bidPrice": decimal(bid, pp),
        "bidQty": decimal(bid_qty, qp),
        "askPrice": decimal(ask, pp),
        "askQty": decimal(ask_qty, qp),
        "openPrice": decimal(stats.open, pp),
        "highPrice": decimal(stats.high, pp),
        "lowPrice": decimal(stats.low, pp),
        "volume": decimal(stats.volume, qp),
        "quoteVolume": decimal(stats.volume * weighted, pp),
        "openTime": stats.start_ms,
        "closeTime": tick.ts_ms,
        "firstId": first_id,
        "lastId": last_id,
        "count": max(0, last_id - first_id + 1),
    }


def ticker_event(row: dict[str, Any], event_ms: int) -> bytes:
    """``<symbol>@ticker`` from a :func:`ticker_24hr_json` row."""
    return dumps(ticker_body(row, event_ms))


def ticker_body(row: dict[str, Any], event_ms: int) -> dict[str, Any]:
    """The ``<symbol>@ticker`` event of a :func:`ticker_24hr_json` row, as a dict."""
    return {
        "e": "24hrTicker",
        "E": event_ms,
        "s": row["symbol"],
        "p": row["priceChange"],
        "P": row["priceChangePercent"],
        "w": row["weightedAvgPrice"],
        "x": row["prevClosePrice"],
        "c": row["lastPrice"],
        "Q": row["lastQty"],
        "b": row["bidPrice"],
        "B": row["bidQty"],
        "a": row["askPrice"],
        "A": row["askQty"],
        "o": row["openPrice"],
        "h": row["highPrice"],
        "l": row["lowPrice"],
        "v": row["volume"],
        "q": row["quoteVolume"],
        "O": row["openTime"],
        "C": row["closeTime"],
        "F": row["firstId"],
        "L": row["lastId"],
        "n": row["count"],
    }


def mini_ticker_body(row: dict[str, Any], event_ms: int) -> dict[str, Any]:
    """The ``<symbol>@miniTicker`` event of a 24-hour row, as a dict."""
    return {
        "e": "24hrMiniTicker",
        "E": event_ms,
        "s": row["symbol"],
        "c": row["lastPrice"],
        "o": row["openPrice"],
        "h": row["highPrice"],
        "l": row["lowPrice"],
        "v": row["volume"],
        "q": row["quoteVolume"],
    }


def mini_ticker_event(row: dict[str, Any], event_ms: int) -> bytes:
    """``<symbol>@miniTicker`` from a :func:`ticker_24hr_json` row."""
    return dumps(mini_ticker_body(row, event_ms))


def all_tickers_event(rows: Sequence[dict[str, Any]], event_ms: int, mini: bool) -> bytes:
    """``!ticker@arr`` (or ``!miniTicker@arr`` when ``mini``): every symbol's ticker."""
    build = mini_ticker_body if mini else ticker_body
    return dumps([build(row, event_ms) for row in rows])


def book_ticker_json(market: BinanceMarket, top: tuple[Level, Level]) -> dict[str, Any]:
    """``GET /api/v3/ticker/bookTicker`` for one symbol."""
    spec = market.spec
    pp, qp = _places(spec.price_decimals), _places(spec.qty_decimals)
    (bid, bid_qty), (ask, ask_qty) = top
    return {
        "symbol": market.name,
        "bidPrice": decimal(bid, pp),
        "bidQty": decimal(bid_qty, qp),
        "askPrice": decimal(ask, pp),
        "askQty": decimal(ask_qty, qp),
    }


def book_ticker_event(market: BinanceMarket, update_id: int, top: tuple[Level, Level]) -> bytes:
    """``<symbol>@bookTicker``: best bid and ask, ``u`` = the book's update id."""
    row = book_ticker_json(market, top)
    return dumps(
        {
            "u": update_id,
            "s": row["symbol"],
            "b": row["bidPrice"],
            "B": row["bidQty"],
            "a": row["askPrice"],
            "A": row["askQty"],
        }
    )


def combined(stream: str, data: bytes) -> bytes:
    """A combined-stream frame: ``{"stream": ..., "data": ...}`` around encoded ``data``."""
    return b'{"stream":"' + stream.encode() + b'","data":' + data + b"}"
