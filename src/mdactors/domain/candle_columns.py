"""Closed candles of one symbol and interval as numpy columns: the deep backfill's store.

A month of one-minute candles as :class:`~mdactors.domain.candles.Candle`
objects would cost about 12 MB a symbol (276 bytes each); as columns it is
44 bytes a candle (five float64 and one int32). Candles are made as objects
only for the slice a query asks for (:meth:`CandleColumns.between`).
:func:`aggregate` builds every coarser interval from the one-minute columns
with array reductions, buckets aligned on the UTC epoch like the recorder's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mdactors.domain.bars import Bars
from mdactors.domain.candles import Candle, interval_seconds

__all__ = ["CandleColumns", "aggregate", "minute_columns"]

_MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class CandleColumns:
    """``len(close)`` consecutive candles; candle ``i`` opens at ``start_ms + i * step_ms``."""

    symbol: str
    interval: str
    start_ms: int
    step_ms: int
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    trades: np.ndarray

    def __len__(self) -> int:
        return len(self.close)

    @property
    def end_ms(self) -> int:
        """The first millisecond after the last candle."""
        return self.start_ms + len(self) * self.step_ms

    @property
    def nbytes(self) -> int:
        """Bytes held by the columns."""
        columns = (self.open, self.high, self.low, self.close, self.volume, self.trades)
        return sum(column.nbytes for column in columns)

    def head(self, count: int) -> CandleColumns:
        """The first ``count`` candles."""
        kept = slice(0, count)
        return CandleColumns(
            self.symbol,
            self.interval,
            self.start_ms,
            self.step_ms,
            self.open[kept],
            self.high[kept],
            self.low[kept],
            self.close[kept],
            self.volume[kept],
            self.trades[kept],
        )

    def between(self, start_ms: int, end_ms: int, limit: int, closed: bool = True) -> list[Candle]:
        """The most recent ``limit`` candles opening in ``[start_ms, end_ms]``, oldest first."""
        if limit <= 0 or not len(self):
            return []
        first = max(0, -((self.start_ms - start_ms) // self.step_ms))  # ceiling division
        last = min(len(self) - 1, (end_ms - self.start_ms) // self.step_ms)
        first = max(first, last - limit + 1)
        if first > last:
            return []
        window = slice(first, last + 1)
        rows = zip(
            self.open[window].tolist(),
            self.high[window].tolist(),
            self.low[window].tolist(),
            self.close[window].tolist(),
            self.volume[window].tolist(),
            self.trades[window].tolist(),
            strict=True,
        )
        start, step, symbol, interval = self.start_ms, self.step_ms, self.symbol, self.interval
        return [
            Candle(symbol, interval, start + (first + i) * step, o, h, low, c, v, t, closed)
            for i, (o, h, low, c, v, t) in enumerate(rows)
        ]


def minute_columns(
    symbol: str, bars: Bars, price_decimals: int, qty_decimals: int, trades: int
) -> CandleColumns:
    """One-minute ``bars`` as columns rounded to the symbol's grid, ``trades`` prints each."""
    return CandleColumns(
        symbol,
        "1m",
        bars.start_ns // 1_000_000,
        _MINUTE_MS,
        np.round(bars.open, price_decimals),
        np.round(bars.high, price_decimals),
        np.round(bars.low, price_decimals),
        np.round(bars.close, price_decimals),
        np.round(bars.volume, qty_decimals),
        np.full(len(bars), trades, dtype=np.int32),
    )


def aggregate(minutes: CandleColumns, interval: str) -> tuple[CandleColumns, Candle | None]:
    """``minutes`` (at least one) folded into ``interval`` buckets: the closed ones,
    and the last bucket as a forming (not closed) candle when ``minutes`` ends inside it.

    The first bucket holds only the minutes it has when ``minutes`` starts
    inside it, as the recorder's first candle would.
    """
    count = len(minutes)
    if not count:
        raise ValueError("no minutes to aggregate")
    length_ms = interval_seconds(interval) * 1000
    starts = minutes.start_ms + _MINUTE_MS * np.arange(count, dtype=np.int64)
    buckets = starts - starts % length_ms
    edges = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    lasts = np.r_[edges[1:] - 1, count - 1]
    columns = CandleColumns(
        minutes.symbol,
        interval,
        int(buckets[0]),
        length_ms,
        minutes.open[edges],
        np.maximum.reduceat(minutes.high, edges),
        np.minimum.reduceat(minutes.low, edges),
        minutes.close[lasts],
        np.add.reduceat(minutes.volume, edges),
        np.add.reduceat(minutes.trades, edges, dtype=np.int32),
    )
    if columns.end_ms <= minutes.end_ms:
        return columns, None
    (forming,) = columns.between(columns.end_ms - length_ms, columns.end_ms, 1, closed=False)
    return columns.head(len(columns) - 1), forming
