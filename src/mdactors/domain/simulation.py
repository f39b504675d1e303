"""Whole simulated series compared with a reference: the maths of GenerateSimulation.

Five kinds of simulation, all calibrated on the reference series (its
per-bar volatility σ of log returns, its drift, its distribution) and all
vectorised (numpy, no Python loop per point):

* ``STATISTICAL_SIMILARITY``: a stationary block bootstrap (Politis–Romano)
  of the reference's own log returns: same distribution, same tails, the
  volatility clusters of the blocks kept;
* ``MONTE_CARLO``: an ensemble of paths with fat-tailed innovations; the
  closes follow the ensemble's median member (the path whose last close is
  the median: conditioning on the end point keeps the moves' volatility σ,
  which a per-bar median across paths would average away) and each bar's
  low/high span the ensemble's 10th/90th percentile, a fan chart around one
  typical path;
* ``BROWNIAN_MOTION``: geometric Brownian motion with Gaussian shocks at σ,
  no drift (a martingale) unless ``trend_factor`` adds one;
* ``MEAN_REVERSION``: an Ornstein–Uhlenbeck log price pulled back to the
  starting level (half-life a twentieth of the span), so it wanders far less
  than a random walk;
* ``TREND_FOLLOWING``: returns with momentum (AR(1), φ = 0.6) around the
  reference's own drift, so moves persist and the reference's trend goes on.

Parameters: ``volatility_factor`` scales σ; ``trend_factor`` adds a trend of
that total return over the span (0.1 = +10 %, and the mean-reversion level
moves by it); ``include_noise`` adds i.i.d. multiplicative observation noise
to every simulated price, with a standard deviation of ``noise_level`` times
the reference's per-bar volatility σ (0.01 = 1 % of a typical bar's move,
1 = as large as one). Read as a fraction of the price instead, the ecosystem's
reference request (100 bars over 24 h, ``noise_level`` 0.01) would add noise
four times the bar volatility and leave nothing of the reference's statistics.

Single-path kinds draw one log return per bar; each bar's high and low are
then drawn from the exact distribution of the maximum and minimum of a
Brownian bridge from its open to its close with the bar's variance σ²
(``max = (a + b + √((b − a)² + 2σ²E)) / 2``, E ~ Exp(1)), so the extremes
are those of a continuous path without simulating the path between bars.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from mdactors.domain.bars import Bars

__all__ = [
    "DEFAULT_NOISE_LEVEL",
    "MAX_ENSEMBLE_STEPS",
    "SimulationError",
    "SimulationKind",
    "SimulationParams",
    "bar_volatility",
    "simulate",
]

#: Observation noise (a fraction of the bar volatility σ) when noise is on and no level is given.
DEFAULT_NOISE_LEVEL = 0.1
#: Total steps an ensemble may draw (paths × bars); fewer paths for longer series.
MAX_ENSEMBLE_STEPS = 4_000_000
_MIN_PATHS, _MAX_PATHS = 8, 256
_MOMENTUM = 0.6
_REVERSION_SPANS = 20.0
_STORM_SHARE, _STORM_SCALE = 0.1, 2.0


class SimulationError(ValueError):
    """A simulation parameter is out of range; the message names it."""


class SimulationKind(enum.IntEnum):
    """The kinds of simulation; values are the protobuf ``SimulationType`` numbers."""

    STATISTICAL_SIMILARITY = 0
    MONTE_CARLO = 1
    BROWNIAN_MOTION = 2
    MEAN_REVERSION = 3
    TREND_FOLLOWING = 4


@dataclass(frozen=True, slots=True)
class SimulationParams:
    """How to bend a simulation away from its reference (see the module docstring)."""

    volatility_factor: float = 1.0
    trend_factor: float = 0.0
    include_noise: bool = False
    noise_level: float = DEFAULT_NOISE_LEVEL

    def __post_init__(self) -> None:
        checks = (
            ("volatility_factor", 0.0 < self.volatility_factor <= 10.0, "must be within (0, 10]"),
            ("trend_factor", -0.99 <= self.trend_factor <= 10.0,
             "must be within -0.99..10 (a total return over the span: 0.1 = +10 %)"),
            ("noise_level", 0.0 <= self.noise_level <= 1.0,
             "must be within 0..1 (a fraction of the reference's bar volatility)"),
        )  # fmt: skip
        for name, ok, message in checks:
            value = getattr(self, name)
            if not math.isfinite(value) or not ok:
                raise SimulationError(f"{name} {message}, got {value!r}")


def bar_volatility(prices: np.ndarray) -> float:
    """Standard deviation of the log returns of ``prices`` (0 with fewer than 3 prices)."""
    if len(prices) < 3:
        return 0.0
    return float(np.std(np.diff(np.log(prices))))


def simulate(
    kind: SimulationKind,
    reference: Bars,
    params: SimulationParams,
    rng: np.random.Generator,
    *,
    fallback_sigma: float,
) -> Bars:
    """Simulate ``len(reference)`` bars of ``kind`` on the reference's grid and start price.

    ``fallback_sigma`` is the per-bar σ to use when the reference has no
    variation to calibrate on (e.g. a flat history).
    """
    prices = reference.prices()
    count = len(reference)
    returns = np.diff(np.log(prices))
    sigma = (bar_volatility(prices) or fallback_sigma) * params.volatility_factor
    trend = math.log1p(params.trend_factor) / count
    noise = params.noise_level * sigma if params.include_noise else 0.0
    start = math.log(prices[0])
    volume = _volumes(reference.volume, rng)
    if kind is SimulationKind.MONTE_CARLO:
        return _ensemble(reference, start, sigma, trend, noise, volume, rng)
    if kind is SimulationKind.STATISTICAL_SIMILARITY:
        bar_returns = _bootstrap(returns, params.volatility_factor, rng) + trend
    elif kind is SimulationKind.BROWNIAN_MOTION:
        bar_returns = trend - 0.5 * sigma * sigma + sigma * rng.standard_normal(count)
    elif kind is SimulationKind.MEAN_REVERSION:
        half_life = max(2.0, count / _REVERSION_SPANS)
        decay = 0.5 ** (1.0 / half_life)
        deviation = ar1(sigma * rng.standard_normal(count), decay)
        levels = trend * np.arange(1, count + 1) + deviation
        bar_returns = np.diff(levels, prepend=0.0)
    else:
        shocks = sigma * math.sqrt(1.0 - _MOMENTUM**2) * rng.standard_normal(count)
        drift = float(np.mean(returns)) if len(returns) else 0.0
        bar_returns = drift + trend + ar1(shocks, _MOMENTUM)
    closes = start + np.cumsum(bar_returns)
    if noise:
        closes += noise * rng.standard_normal(count)
    opens = np.concatenate(([start], closes[:-1]))
    middle, gap = opens + closes, (closes - opens) ** 2
    spread = 2.0 * sigma * sigma
    highs = 0.5 * (middle + np.sqrt(gap + spread * rng.standard_exponential(count)))
    lows = 0.5 * (middle - np.sqrt(gap + spread * rng.standard_exponential(count)))
    price_opens = np.exp(opens)
    price_opens[:1] = prices[:1]  # exactly the reference's first price, not exp(log(p))
    return Bars(
        reference.start_ns,
        reference.step_ns,
        price_opens,
        np.exp(highs),
        np.exp(lows),
        np.exp(closes),
        volume,
    )


def ar1(shocks: np.ndarray, coefficient: float) -> np.ndarray:
    """``y[t] = coefficient · y[t−1] + shocks[t]`` from ``y[−1] = 0``, vectorised.

    Blocked: inside every block of ``B`` steps at once, ``y`` with a zero start
    is ``a^i · cumsum(x_k a^−k)`` (``B`` small enough that ``a^−B`` stays far
    from overflow); a float loop over the blocks then carries each block's
    last value into the next, adding ``a^(i+1) · carry``. Exact up to rounding,
    for ``0 < coefficient < 1``.
    """
    count = len(shocks)
    block = int(min(1024, max(1, 200.0 * math.log(10.0) / -math.log(coefficient))))
    blocks = -(-count // block)
    padded = np.zeros(blocks * block)
    padded[:count] = shocks
    grid = padded.reshape(blocks, block)
    powers = coefficient ** np.arange(block, dtype=float)
    local = np.cumsum(grid / powers, axis=1) * powers
    carry, last, carries = 0.0, coefficient**block, np.empty(blocks)
    for index, end in enumerate(local[:, -1].tolist()):
        carries[index] = carry
        carry = carry * last + end
    local += carries[:, None] * (powers * coefficient)
    return local.ravel()[:count]


def _bootstrap(returns: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """A stationary block bootstrap of ``returns`` (mean block √n), deviations scaled."""
    count = len(returns)
    if count < 2:
        return np.zeros(count)
    block = max(1.0, math.sqrt(count))
    fresh = rng.random(count) < 1.0 / block
    fresh[0] = True
    positions = np.arange(count)
    block_start = np.maximum.accumulate(np.where(fresh, positions, 0))
    origins = rng.integers(0, count, size=count)[block_start]
    picked = returns[(origins + positions - block_start) % count]
    mean = float(np.mean(returns))
    return (picked - mean) * scale + mean


def _ensemble(
    reference: Bars,
    start: float,
    sigma: float,
    trend: float,
    noise: float,
    volume: np.ndarray,
    rng: np.random.Generator,
) -> Bars:
    """A Monte Carlo fan: many fat-tailed paths summarised per bar.

    Shocks are a scale mixture of normals (one step in ten in a regime of
    twice the volatility, excess kurtosis ≈ 1.4), rescaled to variance σ².
    """
    count = len(reference)
    paths = min(_MAX_PATHS, max(_MIN_PATHS, MAX_ENSEMBLE_STEPS // max(count, 1)))
    stormy = rng.random((paths, count)) < _STORM_SHARE
    scale = np.where(stormy, _STORM_SCALE, 1.0) * (
        sigma / math.sqrt(1.0 + _STORM_SHARE * (_STORM_SCALE**2 - 1.0))
    )
    shocks = rng.standard_normal((paths, count)) * scale
    shocks += trend - 0.5 * sigma * sigma
    logs = np.cumsum(shocks, axis=1)
    if noise:
        logs += noise * rng.standard_normal(logs.shape)
    close = logs[int(np.argsort(logs[:, -1])[paths // 2])].copy()
    logs.sort(axis=0)
    low, high = (logs[round(q * (paths - 1))] for q in (0.1, 0.9))
    closes = np.exp(start + close)
    opens = np.concatenate((reference.prices()[:1], closes[:-1]))
    highs = np.maximum(np.exp(start + high), np.maximum(opens, closes))
    lows = np.minimum(np.exp(start + low), np.minimum(opens, closes))
    return Bars(reference.start_ns, reference.step_ns, opens, highs, lows, closes, volume)


def _volumes(reference: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-bar volumes: log-normal around the reference's mean bar volume."""
    mean = float(np.mean(reference)) if len(reference) else 0.0
    return mean * np.exp(0.5 * rng.standard_normal(len(reference)) - 0.125)
