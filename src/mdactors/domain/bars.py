"""OHLCV bars on a regular time grid, as numpy columns.

The column form of :class:`~mdactors.domain.candles.Candle` for whole series:
simulations make and compare up to millions of bars, so each field is one
array. Two ways in: :func:`path_bars` cuts a fine price path into bars (real
intra-bar highs and lows), :func:`grid_bars` folds recorded candles onto a
grid. Invariant of every constructor: ``low <= min(open, close)`` and
``high >= max(open, close)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mdactors.domain.candles import Candle

__all__ = ["Bars", "concat_bars", "grid_bars", "path_bars"]


@dataclass(frozen=True, slots=True)
class Bars:
    """``len(close)`` bars; bar ``i`` opens at ``start_ns + i * step_ns``."""

    start_ns: int
    step_ns: int
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.close)

    @property
    def timestamps_ns(self) -> np.ndarray:
        """Opening time of each bar, nanoseconds since the epoch."""
        return self.start_ns + self.step_ns * np.arange(len(self), dtype=np.int64)

    def prices(self) -> np.ndarray:
        """The series the bars trace: the first open, then every close (``len + 1``)."""
        return np.concatenate((self.open[:1], self.close))


def concat_bars(parts: Sequence[Bars]) -> Bars:
    """Consecutive ``parts`` (one step, each starting where the previous ends) as one."""
    first = parts[0]
    expected = first.start_ns
    for part in parts:
        if part.step_ns != first.step_ns or part.start_ns != expected:
            raise ValueError("bars to join must be consecutive on one grid")
        expected += len(part) * part.step_ns
    columns = ("open", "high", "low", "close", "volume")
    joined = (np.concatenate([getattr(part, name) for part in parts]) for name in columns)
    return Bars(first.start_ns, first.step_ns, *joined)


def path_bars(
    path: np.ndarray, substeps: int, volume: np.ndarray, start_ns: int, step_ns: int
) -> Bars:
    """Cut ``path`` (``len(volume) * substeps + 1`` prices) into bars of ``substeps`` steps."""
    count = len(volume)
    if len(path) != count * substeps + 1:
        raise ValueError(f"a path of {count} bars × {substeps} steps needs {count * substeps + 1}")
    grid = path[1:].reshape(count, substeps)
    closes = grid[:, -1]
    opens = path[:-1:substeps]
    highs = np.maximum(grid.max(axis=1), opens)
    lows = np.minimum(grid.min(axis=1), opens)
    return Bars(start_ns, step_ns, opens, highs, lows, closes, volume)


def grid_bars(candles: Sequence[Candle], start_ns: int, step_ns: int, count: int) -> Bars:
    """Fold ``candles`` (oldest first) into ``count`` bars of ``step_ns`` from ``start_ns``.

    A candle belongs to the bar its start falls in; candles outside the grid
    are ignored. Bars before the first candle are NaN (the caller decides what
    comes before recorded history); a bar in a later gap is flat at the
    previous close with zero volume, as a quiet market would be.
    """
    nan = np.full(count, np.nan)
    if not candles:
        return Bars(start_ns, step_ns, nan, nan.copy(), nan.copy(), nan.copy(), np.zeros(count))
    starts = np.array([candle.start_ms for candle in candles], dtype=np.int64) * 1_000_000
    columns = np.array([[c.open, c.high, c.low, c.close, c.volume] for c in candles], dtype=float).T
    slot = (starts - start_ns) // step_ns
    inside = (slot >= 0) & (slot < count)
    slot, columns = slot[inside], columns[:, inside]
    opens, highs, lows, closes = (nan.copy() for _ in range(4))
    volumes = np.zeros(count)
    if len(slot):
        first = np.unique(slot, return_index=True)[1]
        last = len(slot) - 1 - np.unique(slot[::-1], return_index=True)[1]
        used = slot[first]
        opens[used] = columns[0, first]
        closes[used] = columns[3, last]
        highs[used] = -np.inf
        lows[used] = np.inf
        np.maximum.at(highs, slot, columns[1])
        np.minimum.at(lows, slot, columns[2])
        np.add.at(volumes, slot, columns[4])
        _carry_forward(opens, highs, lows, closes)
    return Bars(start_ns, step_ns, opens, highs, lows, closes, volumes)


def _carry_forward(
    opens: np.ndarray, highs: np.ndarray, lows: np.ndarray, closes: np.ndarray
) -> None:
    """Fill gaps after the first bar with flat bars at the previous close (in place)."""
    known = ~np.isnan(closes)
    index = np.where(known, np.arange(len(closes)), -1)
    np.maximum.accumulate(index, out=index)
    gap = ~known & (index >= 0)
    previous = closes[index[gap]]
    for column in (opens, highs, lows, closes):
        column[gap] = previous
