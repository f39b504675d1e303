"""Stylized facts of returns: the statistics that tell a realistic market from a random walk.

Real asset returns (Cont, "Empirical properties of asset returns", 2001) have
fat tails that fade with aggregation, almost no linear autocorrelation, and
strong, slowly decaying autocorrelation of their magnitudes (volatility
clustering). The functions here measure those properties on a return series;
:func:`check_realism` turns them into the product's realism guarantees.

The second level (Cont 2001, facts 6–10): the memory of ``|r|`` decays
slowly, roughly as a power law (:func:`memory_decay`); volume moves with
volatility (:func:`volume_volatility_correlation`); activity follows the
hour of the day (:func:`hourly_ratio`); and losses are larger than gains
(:func:`skewness` < 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "MEMORY_LAGS",
    "RealismReport",
    "acf",
    "acf_at",
    "aggregate",
    "check_realism",
    "excess_kurtosis",
    "hill_tail_index",
    "hourly_ratio",
    "kurtosis_by_aggregation",
    "log_returns",
    "memory_decay",
    "robust_acf_se",
    "skewness",
    "volume_volatility_correlation",
]

MEMORY_LAGS = (1, 10, 30, 100, 300, 1_440)
"""The lags (steps) at which :func:`memory_decay` reads ACF(|r|)."""


def log_returns(prices: Sequence[float] | np.ndarray) -> np.ndarray:
    """Log returns of a price series (one fewer than the prices)."""
    return np.diff(np.log(np.asarray(prices, dtype=float)))


def aggregate(returns: np.ndarray, size: int) -> np.ndarray:
    """Sums of ``size`` consecutive log returns (non-overlapping; a ragged tail is dropped)."""
    returns = np.asarray(returns, dtype=float)
    usable = len(returns) // size * size
    return returns[:usable].reshape(-1, size).sum(axis=1)


def excess_kurtosis(returns: np.ndarray) -> float:
    """Sample excess kurtosis ``m₄ / m₂² − 3`` (0 for a normal distribution)."""
    centred = np.asarray(returns, dtype=float) - np.mean(returns)
    m2 = float(np.mean(centred**2))
    if m2 == 0.0:
        return float("nan")
    return float(np.mean(centred**4)) / (m2 * m2) - 3.0


def kurtosis_by_aggregation(
    returns: np.ndarray, sizes: Sequence[int] = (1, 5, 15, 60)
) -> dict[int, float]:
    """Excess kurtosis of returns aggregated over each of ``sizes`` steps."""
    return {size: excess_kurtosis(aggregate(returns, size)) for size in sizes}


def skewness(returns: np.ndarray) -> float:
    """Sample skewness ``m₃ / m₂^{3/2}`` (negative: losses larger than gains)."""
    centred = np.asarray(returns, dtype=float) - np.mean(returns)
    m2 = float(np.mean(centred**2))
    if m2 == 0.0:
        return float("nan")
    return float(np.mean(centred**3)) / m2**1.5


def acf_at(series: np.ndarray, lags: Sequence[int]) -> np.ndarray:
    """Sample autocorrelations at the given ``lags`` (each < ``len(series)``)."""
    centred = np.asarray(series, dtype=float) - np.mean(series)
    denominator = float(np.dot(centred, centred))
    return np.array([np.dot(centred[lag:], centred[:-lag]) / denominator for lag in lags])


def memory_decay(returns: np.ndarray, lags: Sequence[int] = MEMORY_LAGS) -> tuple[float, float]:
    """``(ACF(|r|, last) / ACF(|r|, first), slope)`` of the decay of ``|r|``'s memory.

    ``slope`` is the least-squares slope of log ACF on log lag over the lags
    after the first (10..1 440 by default): about −0.2 to −0.4 for real
    returns (a power law), steep or undefined (``nan``, when an ACF is not
    positive) for an exponential cut-off.
    """
    values = acf_at(np.abs(returns), lags)
    ratio = float(values[-1] / values[0])
    tail = values[1:]
    if np.any(tail <= 0.0):
        return ratio, float("nan")
    slope = np.polyfit(np.log(np.asarray(lags[1:], dtype=float)), np.log(tail), 1)[0]
    return ratio, float(slope)


def volume_volatility_correlation(volumes: np.ndarray, returns: np.ndarray) -> float:
    """``corr(V, |r|)`` step by step (0.3–0.6 for one-minute crypto bars)."""
    return float(np.corrcoef(np.asarray(volumes, dtype=float), np.abs(returns))[0, 1])


def hourly_ratio(values: np.ndarray, hours: np.ndarray, *, rms: bool = False) -> float:
    """Busiest over quietest hour of day: the ratio of the largest to the smallest
    per-hour mean of ``values`` (root mean square with ``rms``, for returns).

    ``hours`` is each value's UTC hour 0..23.
    """
    values = np.asarray(values, dtype=float)
    hours = np.asarray(hours)
    weights = values * values if rms else values
    counts = np.bincount(hours, minlength=24)
    means = np.bincount(hours, weights, minlength=24)[counts > 0] / counts[counts > 0]
    if rms:
        means = np.sqrt(means)
    return float(means.max() / means.min())


def hill_tail_index(returns: np.ndarray, tail_fraction: float = 0.01) -> float:
    """Hill's estimate of the tail index α of ``|returns|`` from the largest fraction.

    With ``k`` order statistics above the threshold ``X₍ₖ₊₁₎``,
    ``α = k / Σ log(X₍ᵢ₎ / X₍ₖ₊₁₎)``. Returns near 3 are typical of asset
    returns; a Gaussian gives large values that grow with the sample.
    """
    magnitudes = np.sort(np.abs(np.asarray(returns, dtype=float)))[::-1]
    k = max(int(len(magnitudes) * tail_fraction), 2)
    if len(magnitudes) <= k or magnitudes[k] <= 0.0:
        return float("nan")
    return float(k / np.sum(np.log(magnitudes[:k] / magnitudes[k])))


def acf(series: np.ndarray, lags: int = 20) -> np.ndarray:
    """Sample autocorrelations at lags ``1..lags`` (index 0 is lag 1)."""
    centred = np.asarray(series, dtype=float) - np.mean(series)
    denominator = float(np.dot(centred, centred))
    return np.array(
        [np.dot(centred[lag:], centred[:-lag]) / denominator for lag in range(1, lags + 1)]
    )


def robust_acf_se(returns: np.ndarray, lags: int = 20) -> np.ndarray:
    """Heteroskedasticity-robust standard errors of :func:`acf` at lags ``1..lags``.

    ``SE_k = √(Σ r̃ₜ² r̃ₜ₋ₖ²) / Σ r̃ₜ²`` with ``r̃`` the demeaned returns. Under
    volatility clustering the textbook band ``1/√N`` is too narrow and flags
    spurious autocorrelation; this one is not.
    """
    squares = (np.asarray(returns, dtype=float) - np.mean(returns)) ** 2
    total = float(np.sum(squares))
    return np.array(
        [np.sqrt(np.dot(squares[lag:], squares[:-lag])) / total for lag in range(1, lags + 1)]
    )


@dataclass(frozen=True, slots=True)
class RealismReport:
    """The stylized facts of one return series and the guarantees they break.

    ``kurtosis`` maps aggregation (steps) → excess kurtosis; ``acf_returns``,
    ``acf_se`` and ``acf_abs`` hold lags 1..20. ``failures`` is empty when the
    series passes every check of :func:`check_realism`.
    """

    count: int
    kurtosis: dict[int, float]
    hill_alpha: float
    acf_returns: np.ndarray = field(repr=False)
    acf_se: np.ndarray = field(repr=False)
    acf_abs: np.ndarray = field(repr=False)
    failures: tuple[str, ...]

    @property
    def realistic(self) -> bool:
        """Whether every check passed."""
        return not self.failures


def check_realism(
    returns: np.ndarray, coarse: int = 60, lags: int = 20, *, min_kurtosis: float = 1.0
) -> RealismReport:
    """Measure the stylized facts of one-step ``returns`` and check the guarantees.

    The checks, at the series' own step (one minute in the product's tests):
    excess kurtosis above ``min_kurtosis``; ``|ACF(r, k)|`` within three robust
    standard errors for ``k = 1..10``; ``ACF(|r|, k) > 0.05`` for ``k = 1..5``;
    and excess kurtosis at one step above that at ``coarse`` steps
    (aggregational Gaussianity).
    """
    returns = np.asarray(returns, dtype=float)
    kurtosis = kurtosis_by_aggregation(returns, sorted({1, 5, 15, coarse}))
    acf_r = acf(returns, lags)
    se = robust_acf_se(returns, lags)
    acf_abs = acf(np.abs(returns), lags)
    failures: list[str] = []
    if not kurtosis[1] > min_kurtosis:
        failures.append(f"excess kurtosis {kurtosis[1]:.3f} ≤ {min_kurtosis}")
    for k in range(1, 11):
        if abs(acf_r[k - 1]) >= 3.0 * se[k - 1]:
            failures.append(f"|ACF(r, {k})| = {abs(acf_r[k - 1]):.4f} ≥ 3 SE ({se[k - 1]:.4f})")
    for k in range(1, 6):
        if not acf_abs[k - 1] > 0.05:
            failures.append(f"ACF(|r|, {k}) = {acf_abs[k - 1]:.4f} ≤ 0.05")
    if not kurtosis[1] > kurtosis[coarse]:
        failures.append(
            f"excess kurtosis at 1 step ({kurtosis[1]:.3f}) ≤ at {coarse} ({kurtosis[coarse]:.3f})"
        )
    return RealismReport(
        len(returns), kurtosis, hill_tail_index(returns), acf_r, se, acf_abs, tuple(failures)
    )
