"""Trades for the minutes before the live feed started, made from their one-minute candles.

The live tape holds one print per tick from start-up on; a client asking for
recent trades the moment it connects expects a full tape. These prints are
drawn inside each candle's range (open first, close last, never outside
``[low, high]``) with the candle's volume split among them, so the tape and
the candles agree. The same candles and generator give the same trades.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mdactors.domain.candles import Candle
from mdactors.domain.symbols import SymbolSpec
from mdactors.domain.tick import Trade

__all__ = ["PRESTART_MINUTES", "PRESTART_PER_MINUTE", "TRADE_ID_BASE", "backfill_trades"]

PRESTART_MINUTES = 10
"""Minutes before start-up that get a backfilled tape."""
PRESTART_PER_MINUTE = 60
"""Backfilled prints per minute."""
TRADE_ID_BASE = PRESTART_MINUTES * PRESTART_PER_MINUTE
"""Public trade ids: backfilled prints are ``1..TRADE_ID_BASE``, live prints follow.
On the tape (:class:`Trade.id`) a live print's id is the count of live prints so
far (:func:`~mdactors.domain.tick.last_trade_id`) and a backfilled one's is
``<= 0``, so the public id is always ``TRADE_ID_BASE + Trade.id``."""


def backfill_trades(
    spec: SymbolSpec, candles: Sequence[Candle], per_minute: int, rng: np.random.Generator
) -> list[Trade]:
    """``per_minute`` trades inside each one-minute candle, oldest first, ids from 1."""
    trades: list[Trade] = []
    if per_minute <= 0:
        return trades
    position = (np.arange(per_minute) + 0.5) / per_minute
    decimals = spec.price_decimals
    for candle in candles:
        span = candle.high - candle.low
        noise = rng.standard_normal(per_minute) * span * 0.25
        path = candle.open + (candle.close - candle.open) * position + noise
        path[0], path[-1] = candle.open, candle.close
        prices = np.round(np.clip(path, candle.low, candle.high), decimals).tolist()
        sizes = np.exp(0.5 * rng.standard_normal(per_minute) - 0.125) * candle.volume / per_minute
        quantities = np.maximum(np.round(sizes, spec.qty_decimals), spec.lot_size).tolist()
        previous = prices[0]
        for index, (price, quantity) in enumerate(zip(prices, quantities, strict=True)):
            ts_ms = candle.start_ms + int(position[index] * 60_000)
            side = "sell" if price < previous else "buy"
            previous = price
            trades.append(
                Trade(len(trades) + 1, spec.key, price, quantity, side, ts_ms * 1_000_000)
            )
    return trades
