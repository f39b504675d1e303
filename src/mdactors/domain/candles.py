"""OHLCV candles aggregated from ticks (or from smaller candles), closed on time.

A candle closes when the clock passes its end, not when the next tick
arrives: :meth:`CandleSeries.close_until` is driven by a timer. A period with
no ticks yields a flat candle at the previous close with zero volume, so a
series has no holes. Invariants: ``low <= min(open, close)`` and
``high >= max(open, close)`` always hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from mdactors.domain.tick import Tick

__all__ = ["INTERVALS", "Candle", "CandleSeries", "fold_tick", "interval_seconds"]

INTERVALS: dict[str, int] = {
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "1h": 3_600,
    "4h": 14_400,
    "1d": 86_400,
}


def interval_seconds(name: str) -> int:
    """Seconds of a candle interval name; ``ValueError`` for an unknown one."""
    try:
        return INTERVALS[name]
    except KeyError:
        raise ValueError(
            f"unknown interval {name[:20]!r}; expected one of {', '.join(INTERVALS)}"
        ) from None


@dataclass(slots=True)
class Candle:
    """One OHLCV bar. ``start_ms`` is aligned to the interval on the UTC epoch."""

    symbol: str
    interval: str
    start_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int = 0
    closed: bool = False

    @property
    def end_ms(self) -> int:
        """The first millisecond after this candle."""
        return self.start_ms + INTERVALS[self.interval] * 1000


class CandleSeries:
    """Builds the candles of one symbol at one interval.

    ``update`` folds a tick (or a smaller candle) into the current candle and
    returns the candles it closed; ``close_until`` closes on time. At most
    ``max_fill`` flat candles are produced for one gap, so a long pause does
    not turn into millions of bars.
    """

    __slots__ = ("_length_ms", "current", "interval", "max_fill", "symbol")

    def __init__(self, symbol: str, interval: str, max_fill: int = 1_000) -> None:
        self.symbol = symbol
        self.interval = interval
        self._length_ms = interval_seconds(interval) * 1000
        self.max_fill = max_fill
        self.current: Candle | None = None

    def _bucket(self, ts_ms: int) -> int:
        return ts_ms - ts_ms % self._length_ms

    def update(
        self,
        ts_ms: int,
        open_: float,
        high: float,
        low: float,
        close: float,
        volume: float,
        trades: int = 1,
    ) -> list[Candle]:
        """Fold one observation in; return the candles this closed (oldest first).

        An observation older than the current candle is ignored: closed
        candles are final.
        """
        bucket = self._bucket(ts_ms)
        closed: list[Candle] = []
        current = self.current
        if current is not None and bucket > current.start_ms:
            closed = self.close_until(bucket)
            current = self.current
        if current is None or bucket > current.start_ms:
            self.current = Candle(
                self.symbol, self.interval, bucket, open_, high, low, close, volume, trades
            )
            return closed
        if bucket < current.start_ms:
            return closed
        if high > current.high:
            current.high = high
        if low < current.low:
            current.low = low
        current.close = close
        current.volume += volume
        current.trades += trades
        return closed

    def close_until(self, now_ms: int) -> list[Candle]:
        """Close every candle that ended at or before ``now_ms``; return them."""
        closed: list[Candle] = []
        current = self.current
        if current is None or current.end_ms > now_ms:
            return closed
        current.closed = True
        closed.append(current)
        start = current.end_ms
        last_start = self._bucket(now_ms)
        earliest = last_start - self.max_fill * self._length_ms
        if start < earliest:
            start = earliest
        price = current.close
        while start < last_start:
            closed.append(
                Candle(self.symbol, self.interval, start, price, price, price, price, 0.0, 0, True)
            )
            start += self._length_ms
        self.current = Candle(
            self.symbol, self.interval, last_start, price, price, price, price, 0.0
        )
        return closed


def fold_tick(candle: Candle | None, tick: Tick, interval: str) -> Candle:
    """``candle`` with ``tick`` folded in (a copy), for a tick the recorder has not seen yet."""
    length_ms = INTERVALS[interval] * 1000
    start = tick.ts_ms - tick.ts_ms % length_ms
    price = tick.price
    if candle is None or start > candle.start_ms:
        volume, printed = tick.volume, 1 if tick.volume > 0 else 0
        return Candle(tick.symbol, interval, start, price, price, price, price, volume, printed)
    return Candle(
        candle.symbol,
        interval,
        candle.start_ms,
        candle.open,
        max(candle.high, price),
        min(candle.low, price),
        price,
        candle.volume + tick.volume,
        candle.trades + (1 if tick.volume > 0 else 0),
    )
