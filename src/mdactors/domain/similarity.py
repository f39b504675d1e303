"""How alike two price series are: the StatisticalMetrics of GenerateSimulation.

Four measures, each in [0, 1] except the correlation, combined into one
confidence score:

* ``correlation_coefficient``: Pearson correlation of the prices (−1..1);
* ``volatility_similarity``: the ratio of the smaller to the larger standard
  deviation of log returns (1 = same volatility);
* ``return_distribution_similarity``: ``1 − D`` with ``D`` the two-sample
  Kolmogorov–Smirnov distance between the log-return distributions;
* ``trend_similarity``: the share of windows (tenths of the series) in which
  both series move the same way, and the overall direction counted once more.

``confidence_score`` is their weighted mean with a negative correlation
counted as 0: 1 for identical series, lower as they part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SimilarityMetrics", "ks_distance", "similarity"]

_WEIGHTS = {"correlation": 0.3, "volatility": 0.2, "distribution": 0.3, "trend": 0.2}
_TREND_WINDOWS = 10


@dataclass(frozen=True, slots=True)
class SimilarityMetrics:
    """The similarity of two series; field names match the protobuf ``StatisticalMetrics``."""

    correlation_coefficient: float
    volatility_similarity: float
    return_distribution_similarity: float
    trend_similarity: float
    confidence_score: float


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = np.sort(np.asarray(a, dtype=float)), np.sort(np.asarray(b, dtype=float))
    if not len(a) or not len(b):
        return 1.0
    points = np.concatenate((a, b))
    cdf_a = np.searchsorted(a, points, side="right") / len(a)
    cdf_b = np.searchsorted(b, points, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def _resampled(prices: np.ndarray, count: int) -> np.ndarray:
    if len(prices) == count:
        return prices
    return np.interp(np.linspace(0.0, 1.0, count), np.linspace(0.0, 1.0, len(prices)), prices)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0.0 or np.ptp(b) == 0.0:
        return 1.0 if np.array_equal(a, b) else 0.0
    return float(np.clip(np.corrcoef(a, b)[0, 1], -1.0, 1.0))


def _volatility_ratio(ra: np.ndarray, rb: np.ndarray) -> float:
    sa, sb = float(np.std(ra)), float(np.std(rb))
    if max(sa, sb) == 0.0:
        return 1.0
    return min(sa, sb) / max(sa, sb)


def _trend_agreement(a: np.ndarray, b: np.ndarray) -> float:
    edges = np.linspace(0, len(a) - 1, min(_TREND_WINDOWS, len(a) - 1) + 1).round().astype(int)
    moves_a, moves_b = np.sign(np.diff(a[edges])), np.sign(np.diff(b[edges]))
    overall = np.sign(a[-1] - a[0]) == np.sign(b[-1] - b[0])
    return float((np.sum(moves_a == moves_b) + overall) / (len(moves_a) + 1))


def similarity(reference: np.ndarray, candidate: np.ndarray) -> SimilarityMetrics:
    """Compare two positive price series sampled over the same span.

    A series of a different length is linearly resampled to the reference's
    number of points first. Both need at least three points.
    """
    a = np.asarray(reference, dtype=float)
    b = _resampled(np.asarray(candidate, dtype=float), len(a))
    if len(a) < 3:
        raise ValueError("similarity needs at least three prices in each series")
    if not (np.all(a > 0.0) and np.all(b > 0.0)):
        raise ValueError("prices must be positive")
    ra, rb = np.diff(np.log(a)), np.diff(np.log(b))
    correlation = _correlation(a, b)
    volatility = _volatility_ratio(ra, rb)
    distribution = 1.0 - ks_distance(ra, rb)
    trend = _trend_agreement(a, b)
    confidence = (
        _WEIGHTS["correlation"] * max(correlation, 0.0)
        + _WEIGHTS["volatility"] * volatility
        + _WEIGHTS["distribution"] * distribution
        + _WEIGHTS["trend"] * trend
    )
    return SimilarityMetrics(correlation, volatility, distribution, trend, confidence)
