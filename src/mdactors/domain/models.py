"""Price processes. One maths implementation used two ways: ``step`` advances a
live price by one tick (plain Python floats, ~100 ns), ``log_returns`` draws a
whole path at once with numpy for backfills and simulations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["GBM", "SECONDS_PER_YEAR", "ShockStream"]

SECONDS_PER_YEAR = 365.0 * 86_400.0


class ShockStream:
    """Standard-normal shocks drawn from a seeded generator in numpy batches.

    Drawing one float at a time from numpy costs ~700 ns; a batch of 1024
    turned into a Python list costs ~15 ns a draw. The sequence depends only
    on the generator's seed, never on how the draws are consumed.
    """

    __slots__ = ("_batch", "_buffer", "_index", "_rng")

    def __init__(self, rng: np.random.Generator, batch: int = 1024) -> None:
        self._rng = rng
        self._batch = batch
        self._buffer: list[float] = []
        self._index = 0

    def next(self) -> float:
        """Return the next standard-normal draw."""
        if self._index >= len(self._buffer):
            self._buffer = self._rng.standard_normal(self._batch).tolist()
            self._index = 0
        value = self._buffer[self._index]
        self._index += 1
        return value


@dataclass(frozen=True, slots=True)
class GBM:
    """Geometric Brownian motion: ``dS/S = μ dt + σ dW`` with yearly μ and σ."""

    volatility: float
    drift: float = 0.0

    def step(self, price: float, dt_years: float, shock: float) -> float:
        """Advance ``price`` by ``dt_years`` with one standard-normal ``shock``."""
        sigma = self.volatility
        return price * math.exp(
            (self.drift - 0.5 * sigma * sigma) * dt_years + sigma * math.sqrt(dt_years) * shock
        )

    def log_returns(self, count: int, dt_years: float, rng: np.random.Generator) -> np.ndarray:
        """``count`` log returns of one step each: the vectorised twin of :meth:`step`."""
        sigma = self.volatility
        shocks = rng.standard_normal(count)
        return (self.drift - 0.5 * sigma * sigma) * dt_years + sigma * math.sqrt(dt_years) * shocks
