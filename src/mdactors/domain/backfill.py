"""Recent history made at start-up, so history endpoints answer from the first second."""

from __future__ import annotations

import numpy as np

from mdactors.domain.candles import Candle
from mdactors.domain.innovations import MarketFactor
from mdactors.domain.models import SECONDS_PER_YEAR, PriceModel
from mdactors.domain.symbols import SymbolSpec

__all__ = ["backfill_minutes"]


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
    """Closed one-minute candles for the ``minutes`` before ``end_ms``.

    ``end_ms`` must be minute-aligned; the last candle closes exactly at
    ``end_price``, so the live feed continues the history without a jump.
    Each minute is simulated in ``substeps`` steps of the same model that
    drives the live price, giving real intra-minute highs and lows; pass the
    same ``factor`` for every symbol to make their histories correlated.
    """
    if minutes <= 0:
        return []
    steps = minutes * substeps
    dt_years = 60.0 / substeps / SECONDS_PER_YEAR
    path = model.path(end_price, dt_years, steps, rng, factor)
    prices = path[1:] * (end_price / path[-1])
    start_price = path[0] * (end_price / path[-1])
    grid = prices.reshape(minutes, substeps)
    opens = np.concatenate(([start_price], grid[:-1, -1]))
    highs = np.maximum(grid.max(axis=1), opens)
    lows = np.minimum(grid.min(axis=1), opens)
    closes = grid[:, -1]
    mean_volume = spec.daily_volume / 1_440.0
    volumes = mean_volume * np.exp(0.5 * rng.standard_normal(minutes) - 0.125)
    decimals = spec.price_decimals
    first_start = end_ms - minutes * 60_000
    candles = []
    for index, (o, h, low, c, v) in enumerate(
        zip(
            np.round(opens, decimals).tolist(),
            np.round(highs, decimals).tolist(),
            np.round(lows, decimals).tolist(),
            np.round(closes, decimals).tolist(),
            np.round(volumes, spec.qty_decimals).tolist(),
            strict=True,
        )
    ):
        candles.append(
            Candle(spec.key, "1m", first_start + index * 60_000, o, h, low, c, v, substeps, True)
        )
    return candles
