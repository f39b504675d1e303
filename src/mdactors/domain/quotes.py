"""Bid/ask around a mid price, and the volume of one tick."""

from __future__ import annotations

import math

from mdactors.domain.symbols import SymbolSpec

__all__ = ["quote", "round_price", "tick_volume"]


def round_price(spec: SymbolSpec, price: float) -> float:
    """``price`` rounded to the symbol's tick size (never below one tick)."""
    return max(round(price, spec.price_decimals), spec.tick_size)


def quote(spec: SymbolSpec, mid: float, activity: float) -> tuple[float, float]:
    """Return ``(bid, ask)`` around ``mid``.

    The spread moves within the symbol's range with ``activity`` (0 = calm,
    1 = busy); bid rounds down and ask up to the tick size, and they are always
    at least one tick apart, so the book is never crossed or locked.
    """
    narrow, wide = spec.spread_bps
    spread_bps = narrow + (wide - narrow) * min(max(activity, 0.0), 1.0)
    half = mid * spread_bps / 20_000.0
    tick = spec.tick_size
    bid = math.floor((mid - half) / tick + 1e-9) * tick
    ask = math.ceil((mid + half) / tick - 1e-9) * tick
    if ask - bid < tick * 0.5:
        ask = bid + tick
    bid = max(bid, tick)
    if ask <= bid:
        ask = bid + tick
    return round(bid, spec.price_decimals), round(ask, spec.price_decimals)


def tick_volume(spec: SymbolSpec, interval_s: float, shock: float) -> float:
    """A log-normal volume whose mean is the symbol's daily volume pro rata."""
    mean = spec.daily_volume * interval_s / 86_400.0
    # exp(0.5 z - 0.125) has mean 1 for a standard-normal z.
    volume = mean * math.exp(0.5 * shock - 0.125)
    return max(round(volume, spec.qty_decimals), spec.lot_size)
