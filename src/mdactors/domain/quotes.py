"""Bid/ask around a mid price, and the volume of one tick.

These run on every tick, so they work in integer ticks and lots: a price is
``k / price_scale`` with an integer ``k``. Dividing an integer by a power of
ten gives the double nearest the decimal value (IEEE division is correctly
rounded), exactly what ``round(x, n)`` would give, at a fraction of its cost.
"""

from __future__ import annotations

import math

from mdactors.domain.symbols import SymbolSpec

__all__ = ["quote", "round_price", "tick_lots"]

_EPSILON = 1e-9


def round_price(spec: SymbolSpec, price: float) -> float:
    """``price`` rounded to the symbol's tick size (never below one tick)."""
    scale = spec.price_scale
    ticks = round(price * scale)
    return (ticks if ticks > 1 else 1) / scale


def quote(
    spec: SymbolSpec, mid: float, activity: float, spread_factor: float = 1.0
) -> tuple[float, float]:
    """Return ``(bid, ask)`` around ``mid``.

    The spread moves within the symbol's range with ``activity`` (0 = calm,
    1 = busy), times ``spread_factor`` (configuration); bid rounds down and
    ask up to the tick size, and they are always at least one tick apart, so
    the book is never crossed or locked.
    """
    narrow, wide = spec.spread_bps
    if activity > 1.0:
        activity = 1.0
    elif activity < 0.0:
        activity = 0.0
    half = mid * (narrow + (wide - narrow) * activity) * spread_factor / 20_000.0
    scale = spec.price_scale
    bid = math.floor((mid - half) * scale + _EPSILON)
    ask = math.ceil((mid + half) * scale - _EPSILON)
    if bid < 1:
        bid = 1
    if ask <= bid:
        ask = bid + 1
    return bid / scale, ask / scale


def tick_lots(spec: SymbolSpec, interval_s: float, shock: float) -> int:
    """A log-normal volume in lots (at least one) whose mean is the daily volume pro rata."""
    mean = spec.daily_volume * interval_s / 86_400.0
    # exp(0.5 z - 0.125) has mean 1 for a standard-normal z.
    lots = round(mean * math.exp(0.5 * shock - 0.125) * spec.qty_scale)
    return lots if lots > 1 else 1
