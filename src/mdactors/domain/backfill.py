"""Recent history made at start-up, so history endpoints answer from the first second.

:func:`minute_history` is the vectorised twin of a live actor over whole
minutes: the symbol's own model (long memory, jumps, tails) stepped
``substeps`` times a minute with the rhythm of each step's UTC hour, and
volume from the same :func:`~mdactors.domain.quotes.activity` the actor
uses. The path is drawn forwards from its seed and then scaled so that its
last close is exactly the live price (a scale leaves every log return
unchanged, so the history keeps all its stylized facts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mdactors.domain.candles import Candle
from mdactors.domain.innovations import MarketFactor
from mdactors.domain.models import SECONDS_PER_YEAR, PriceModel
from mdactors.domain.quotes import activity, volumes
from mdactors.domain.symbols import SymbolSpec

__all__ = ["MinuteHistory", "backfill_minutes", "minute_history"]

_MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class MinuteHistory:
    """Closed one-minute bars as arrays (unrounded); ``start_ms`` is the first minute's."""

    start_ms: int
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.close)


def minute_history(
    spec: SymbolSpec,
    model: PriceModel,
    end_price: float,
    end_ms: int,
    minutes: int,
    rng: np.random.Generator,
    substeps: int = 6,
    factor: MarketFactor | None = None,
) -> MinuteHistory:
    """The ``minutes`` one-minute bars before ``end_ms``, the last closing at ``end_price``.

    ``end_ms`` must be minute-aligned. Each minute is ``substeps`` steps of
    the model, so highs and lows are those of a real intra-minute path; pass
    the same ``factor`` for every symbol to make their histories correlated.
    """
    steps = minutes * substeps
    step_ms = _MINUTE_MS // substeps
    first_ms = end_ms - minutes * _MINUTE_MS
    # Each step is stamped, as a live tick is, at its end.
    stamps = (first_ms + step_ms * np.arange(1, steps + 1, dtype=np.int64)) * 1_000_000
    rhythm = model.rhythm
    season = None if rhythm.flat else rhythm.sigmas(stamps)
    dt_years = step_ms / 1_000.0 / SECONDS_PER_YEAR
    path = model.path(end_price, dt_years, steps, rng, factor, season=season)
    moves = np.diff(np.log(path))
    typical = model.typical_move() * model.volatility * np.sqrt(dt_years)
    if typical:
        level = activity(moves, typical if season is None else typical * season)
    else:
        level = np.ones(steps)
    if not rhythm.flat:
        level = level * rhythm.volumes(stamps)
    scale = end_price / path[-1]
    grid = (path[1:] * scale).reshape(minutes, substeps)
    opens = np.concatenate(([path[0] * scale], grid[:-1, -1])) if minutes else grid[:, 0]
    noise = rng.standard_normal(minutes)
    minute_level = level.reshape(minutes, substeps).mean(axis=1)
    return MinuteHistory(
        first_ms,
        opens,
        np.maximum(grid.max(axis=1, initial=0.0), opens),
        np.minimum(grid.min(axis=1, initial=np.inf), opens),
        grid[:, -1],
        volumes(spec, 60.0, noise, minute_level),
    )


def backfill_minutes(
    spec: SymbolSpec,
    model: PriceModel,
    end_price: float,
    end_ms: int,
    minutes: int,
    rng: np.random.Generator,
    substeps: int = 6,
    factor: MarketFactor | None = None,
) -> list[Candle]:
    """:func:`minute_history` as closed ``1m`` candles, rounded to the symbol's grid."""
    if minutes <= 0:
        return []
    bars = minute_history(spec, model, end_price, end_ms, minutes, rng, substeps, factor)
    decimals = spec.price_decimals
    columns = (
        np.round(bars.open, decimals).tolist(),
        np.round(bars.high, decimals).tolist(),
        np.round(bars.low, decimals).tolist(),
        np.round(bars.close, decimals).tolist(),
        np.round(bars.volume, spec.qty_decimals).tolist(),
    )
    return [
        Candle(spec.key, "1m", bars.start_ms + index * _MINUTE_MS, o, h, low, c, v, substeps, True)
        for index, (o, h, low, c, v) in enumerate(zip(*columns, strict=True))
    ]
