"""Statistics over price series: 24h summaries and the correlation of returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mdactors.domain.candles import Candle

__all__ = ["RollingStats", "correlation_matrix", "rolling_stats"]


@dataclass(frozen=True, slots=True)
class RollingStats:
    """Open/high/low/last/volume over a window, with the change from its open."""

    open: float
    high: float
    low: float
    last: float
    volume: float
    change: float
    change_pct: float
    start_ms: int
    end_ms: int

    def extended(self, candle: Candle | None, last_price: float, end_ms: int) -> RollingStats:
        """These stats with a still-open ``candle`` and the live ``last_price`` folded in."""
        high, low, volume = self.high, self.low, self.volume
        if candle is not None:
            high, low, volume = max(high, candle.high), min(low, candle.low), volume + candle.volume
        high, low = max(high, last_price), min(low, last_price)
        change = last_price - self.open
        change_pct = change / self.open * 100.0 if self.open else 0.0
        return RollingStats(
            self.open, high, low, last_price, volume, change, change_pct, self.start_ms, end_ms
        )


def rolling_stats(candles: Sequence[Candle], last_price: float, end_ms: int) -> RollingStats:
    """Summarise ``candles`` (oldest first) up to ``last_price`` at ``end_ms``."""
    if not candles:
        return RollingStats(
            last_price, last_price, last_price, last_price, 0.0, 0.0, 0.0, end_ms, end_ms
        )
    open_ = candles[0].open
    high = max(max(candle.high for candle in candles), last_price)
    low = min(min(candle.low for candle in candles), last_price)
    volume = float(sum(candle.volume for candle in candles))
    change = last_price - open_
    change_pct = change / open_ * 100.0 if open_ else 0.0
    return RollingStats(
        open_, high, low, last_price, volume, change, change_pct, candles[0].start_ms, end_ms
    )


def correlation_matrix(closes: Mapping[str, Sequence[float]]) -> dict[str, dict[str, float]]:
    """Pearson correlation of log returns between every pair of series.

    Series are aligned on their most recent common length. A series with
    fewer than three points or no variance has no defined correlation: its
    off-diagonal entries are ``nan`` (callers render them as null).
    """
    names = list(closes)
    length = min((len(closes[name]) for name in names), default=0)
    result: dict[str, dict[str, float]] = {name: {} for name in names}
    if length < 3:
        for a in names:
            for b in names:
                result[a][b] = 1.0 if a == b else float("nan")
        return result
    prices = np.array([np.asarray(closes[name][-length:], dtype=float) for name in names])
    returns = np.diff(np.log(prices), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.corrcoef(returns) if len(names) > 1 else np.ones((1, 1))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            result[a][b] = 1.0 if i == j else float(matrix[i, j])
    return result
