"""Perpetual swaps priced on their spot: the basis process.

A perpetual (``BTC/USD-PERP``) trades at its spot's mid times ``1 + basis``.
The basis is an Ornstein–Uhlenbeck process in basis points: it is pulled
back to ``mean_bps`` with ``half_life`` seconds and wanders with a stationary
standard deviation of ``std_bps``, stepped exactly for any interval, so a
tick interval change does not change its statistics. Chaos scenarios that
target the perpetual (a divergence from its spot) act on top of it, as on
any symbol's own price.

Defaults follow BTC perpetuals on large venues: a premium of about +1 bp on
average, a few basis points of wander, reverting within minutes.

The basis also follows its spot: its mean moves with the spot's momentum
(up to ±``MOMENTUM_BPS`` as the decayed sum of the last hour's spot returns
passes ±``MOMENTUM_SCALE``: buyers pay up for leverage in a rally) and its
wander widens with the spot's recent volatility (an exponential average of
squared returns over ``VOLATILITY_HALF_LIFE_S``, relative to the model's
long-run σ, bounded to 0.5–10×).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["BasisParams", "BasisProcess", "PerpetualSnapshot"]

_BATCH = 256
_LN2 = math.log(2.0)
MOMENTUM_BPS = 5.0
MOMENTUM_SCALE = 0.01
MOMENTUM_HALF_LIFE_S = 3_600.0
VOLATILITY_HALF_LIFE_S = 600.0


@dataclass(frozen=True, slots=True)
class BasisParams:
    """The basis's long-run mean and stationary σ (bp) and its half-life (s)."""

    mean_bps: float = 1.0
    std_bps: float = 3.0
    half_life: float = 600.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean_bps) and abs(self.mean_bps) < 10_000):
            raise ValueError(f"mean_bps must be finite and within ±10000, got {self.mean_bps!r}")
        if not (math.isfinite(self.std_bps) and self.std_bps >= 0):
            raise ValueError(f"std_bps must be ≥ 0, got {self.std_bps!r}")
        if not (math.isfinite(self.half_life) and self.half_life > 0):
            raise ValueError(f"half_life must be > 0 s, got {self.half_life!r}")


class BasisProcess:
    """The basis of one perpetual, stepped one tick at a time (bp)."""

    __slots__ = ("_draws", "_momentum", "_rng", "_sigma2", "_variance", "bps", "params")

    MEAN_FACTOR = 1.0 + BasisParams().mean_bps / 10_000.0
    """``1 + basis`` at the default mean: a perpetual's price when only its spot is known."""

    def __init__(
        self, params: BasisParams, rng: np.random.Generator, spot_sigma: float = 0.0
    ) -> None:
        """``spot_sigma`` is the spot's long-run volatility per √second (0: the basis
        ignores the spot's volatility)."""
        self.params = params
        self.bps = params.mean_bps
        self._rng = rng
        self._draws: list[float] = []
        self._sigma2 = spot_sigma * spot_sigma
        self._variance = self._sigma2
        self._momentum = 0.0

    @property
    def momentum(self) -> float:
        """The decayed sum of the spot's recent log returns (≈ the last hour's return)."""
        return self._momentum

    @property
    def widening(self) -> float:
        """How many times its usual wander the basis has now (the spot's volatility ratio)."""
        if not self._sigma2:
            return 1.0
        return min(10.0, max(0.5, math.sqrt(self._variance / self._sigma2)))

    def step(self, dt: float, noise_scale: float = 1.0, spot_return: float = 0.0) -> float:
        """Advance ``dt`` seconds (exactly: an OU step has a closed form); the new basis.

        ``noise_scale`` multiplies this step's randomness (the configuration
        service's volatility factor); ``spot_return`` is the spot's log return
        over the same step (it moves the mean and the width, see the module).
        """
        if not self._draws:
            self._draws = self._rng.standard_normal(_BATCH).tolist()
        params = self.params
        if dt > 0.0:
            self._momentum = self._momentum * math.exp(-_LN2 * dt / MOMENTUM_HALF_LIFE_S)
            self._momentum += spot_return
            keep = math.exp(-_LN2 * dt / VOLATILITY_HALF_LIFE_S)
            self._variance = self._variance * keep + (1.0 - keep) * spot_return**2 / dt
        decay = math.exp(-_LN2 * dt / params.half_life)
        width = noise_scale * params.std_bps * self.widening
        noise = width * math.sqrt(max(0.0, 1.0 - decay * decay))
        mean = params.mean_bps + MOMENTUM_BPS * math.tanh(self._momentum / MOMENTUM_SCALE)
        self.bps = mean + (self.bps - mean) * decay + noise * self._draws.pop()
        return self.bps

    @property
    def factor(self) -> float:
        """``1 + basis``: what the spot's mid is multiplied by."""
        return 1.0 + self.bps / 10_000.0


@dataclass(slots=True)
class PerpetualSnapshot:
    """A perpetual's contract state after its latest tick, as every API shows it.

    Made once per perpetual tick and shared by every reader: treat it as
    immutable (not ``frozen``, whose ``__init__`` would cost a third of the step)."""

    time_ns: int
    mark_price: float
    index_price: float
    premium_index: float
    funding_rate: float
    """The estimated rate of the interval in progress (settles at ``next_funding_ms``)."""
    next_funding_ms: int
    interest_rate: float
    open_interest: float
    """In contracts (base units); its value is × the mark price."""
