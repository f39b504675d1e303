"""Bid/ask around a mid price, and the volume of one tick.

Volume follows the market's state: a step's volume is the symbol's daily
volume pro rata, times :func:`activity` (``VOLUME_FLOOR + (1 −
VOLUME_FLOOR)·|move| / typical``: big moves and volatile regimes trade more,
with the heavy tails of the moves themselves), times the rhythm's volume level
and scenarios' multipliers, times log-normal noise. The same expressions serve
one tick (floats) and whole histories (numpy arrays).

These run on every tick, so they work in integer ticks and lots: a price is
``k / price_scale`` with an integer ``k``. Dividing an integer by a power of
ten gives the double nearest the decimal value (IEEE division is correctly
rounded), exactly what ``round(x, n)`` would give, at a fraction of its cost.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mdactors.domain.symbols import SymbolSpec

__all__ = [
    "VOLUME_FLOOR",
    "VOLUME_NOISE",
    "activity",
    "quote",
    "round_price",
    "tick_lots",
    "volumes",
]

_EPSILON = 1e-9
VOLUME_FLOOR = 0.5
"""The share of volume that trades whatever the price does."""
VOLUME_NOISE = 0.7
"""σ of the log-normal noise of each step's volume."""
_NOISE_MEAN = 0.5 * VOLUME_NOISE * VOLUME_NOISE


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


def activity(move: Any, typical: Any) -> Any:
    """The volume multiplier of a log move (float or array), about 1 for an ordinary move.

    ``typical`` is the expected ``|move|`` of the step in its quiet state
    (:meth:`~mdactors.domain.models.PriceModel.typical_move` × σ√Δt × the
    rhythm's σ level).
    """
    return VOLUME_FLOOR + (1.0 - VOLUME_FLOOR) * abs(move) / typical


def tick_volume(spec: SymbolSpec, interval_s: float, noise: float, level: float = 1.0) -> float:
    """A step's volume in units: the daily volume pro rata × ``level`` × log-normal noise.

    ``noise`` is a standard normal z; ``exp(s·z − s²/2)`` has mean 1.
    """
    mean = spec.daily_volume * interval_s / 86_400.0
    return mean * level * math.exp(VOLUME_NOISE * noise - _NOISE_MEAN)


def tick_lots(spec: SymbolSpec, interval_s: float, noise: float, level: float = 1.0) -> int:
    """:func:`tick_volume` in whole lots, at least one."""
    lots = round(tick_volume(spec, interval_s, noise, level) * spec.qty_scale)
    return lots if lots > 1 else 1


def volumes(
    spec: SymbolSpec, interval_s: float, noise: np.ndarray, level: np.ndarray
) -> np.ndarray:
    """:func:`tick_volume` of whole arrays."""
    mean = spec.daily_volume * interval_s / 86_400.0
    return mean * level * np.exp(VOLUME_NOISE * noise - _NOISE_MEAN)
