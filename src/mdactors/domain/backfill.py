"""Recent history made at start-up, so history endpoints answer from the first second.

:func:`minute_history` is the vectorised twin of a live actor over whole
minutes: the symbol's own model (long memory, jumps, tails) stepped
``substeps`` times a minute with the rhythm of each step's UTC hour, and
volume from the same :func:`~mdactors.domain.quotes.activity` the actor
uses. The path is drawn forwards from its seed and then scaled so that its
last close is exactly the live price (a scale leaves every log return
unchanged, so the history keeps all its stylized facts). Given a
``start_price`` too, the path is also bent (a drift constant in log space)
so that its first open is exactly that price: the bridge between two known
prices, e.g. from the last stored candle of an earlier run to the live price.
"""

from __future__ import annotations

import numpy as np

from mdactors.domain.bars import Bars, path_bars
from mdactors.domain.candle_columns import minute_columns
from mdactors.domain.candles import Candle
from mdactors.domain.innovations import MarketFactor
from mdactors.domain.models import SECONDS_PER_YEAR, PriceModel
from mdactors.domain.quotes import activity, volumes
from mdactors.domain.symbols import SymbolSpec

__all__ = ["backfill_minutes", "minute_history", "model_history"]

_MINUTE_MS = 60_000


def model_history(
    spec: SymbolSpec,
    model: PriceModel,
    end_price: float,
    end_ns: int,
    step_ns: int,
    count: int,
    rng: np.random.Generator,
    substeps: int = 6,
    factor: MarketFactor | None = None,
    start_price: float | None = None,
) -> Bars:
    """The ``count`` bars of ``step_ns`` before ``end_ns``, the last closing at ``end_price``
    (and, with ``start_price``, the first opening at it).

    Each bar is ``substeps`` steps of the model, so highs and lows are those
    of a real intra-bar path; pass the same ``factor`` for every symbol to
    make their histories correlated. Volumes are unrounded units.
    """
    steps = count * substeps
    sub_ns = step_ns // substeps
    first_ns = end_ns - count * step_ns
    # Each step is stamped, as a live tick is, at its end.
    stamps = first_ns + sub_ns * np.arange(1, steps + 1, dtype=np.int64)
    rhythm = model.rhythm
    season = None if rhythm.flat else rhythm.sigmas(stamps)
    dt_years = sub_ns / 1e9 / SECONDS_PER_YEAR
    path = model.path(end_price, dt_years, steps, rng, factor, season=season)
    moves = np.diff(np.log(path))
    typical = model.typical_move() * model.volatility * np.sqrt(dt_years)
    if typical:
        level = activity(moves, typical if season is None else typical * season)
    else:
        level = np.ones(steps)
    if not rhythm.flat:
        level = level * rhythm.volumes(stamps)
    prices = path * (end_price / path[-1])
    if start_price is not None:
        prices = prices * np.exp(np.log(start_price / prices[0]) * np.linspace(1.0, 0.0, steps + 1))
    noise = rng.standard_normal(count)
    bar_level = level.reshape(count, substeps).mean(axis=1)
    bars = path_bars(prices, substeps, volumes(spec, step_ns / 1e9, noise, bar_level), 0, 0)
    return Bars(first_ns, step_ns, bars.open, bars.high, bars.low, bars.close, bars.volume)


def minute_history(
    spec: SymbolSpec,
    model: PriceModel,
    end_price: float,
    end_ms: int,
    minutes: int,
    rng: np.random.Generator,
    substeps: int = 6,
    factor: MarketFactor | None = None,
    start_price: float | None = None,
) -> Bars:
    """:func:`model_history` of the ``minutes`` one-minute bars before minute-aligned ``end_ms``."""
    end_ns, minute_ns = end_ms * 1_000_000, _MINUTE_MS * 1_000_000
    return model_history(
        spec, model, end_price, end_ns, minute_ns, minutes, rng, substeps, factor, start_price
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
    columns = minute_columns(spec.key, bars, spec.price_decimals, spec.qty_decimals, substeps)
    return columns.between(columns.start_ms, columns.end_ms, minutes)
