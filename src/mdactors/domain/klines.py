"""Binance's kline intervals, served from the candles the recorder keeps.

The recorder builds ``1m 5m 15m 1h 4h 1d`` candles. Binance has more
intervals; each of them is a whole number of one of ours, so it is
aggregated from that *base* series: ``3m 30m`` from ``1m``, ``2h 6h 8h 12h``
from ``1h``, ``3d 1w 1M`` from ``1d``. Buckets follow Binance: aligned on the
UTC epoch, weeks start on Monday 00:00 UTC and months on the 1st. ``1s`` is
not served (the market keeps no per-second candles).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from mdactors.domain.candles import Candle

__all__ = ["KLINE_INTERVALS", "Kline", "KlineInterval", "aggregate", "kline_of"]

_MINUTE = 60_000
_DAY = 1_440 * _MINUTE
_MONDAY_OFFSET = 4 * _DAY  # 1970-01-01 was a Thursday


@dataclass(frozen=True, slots=True)
class KlineInterval:
    """A Binance interval: its name, the recorder series it is built from, and its buckets."""

    name: str
    base: str
    start: Callable[[int], int]
    """The start (epoch ms) of the bucket holding a timestamp."""
    end: Callable[[int], int]
    """The first millisecond after the bucket starting at a bucket start."""


def _fixed(name: str, base: str, length_ms: int, offset_ms: int = 0) -> KlineInterval:
    return KlineInterval(
        name,
        base,
        lambda ts: ts - (ts - offset_ms) % length_ms,
        lambda start: start + length_ms,
    )


def _month_start(ts_ms: int) -> int:
    moment = datetime.fromtimestamp(ts_ms / 1000, UTC)
    return int(datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp() * 1000)


def _next_month(start_ms: int) -> int:
    moment = datetime.fromtimestamp(start_ms / 1000, UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)


KLINE_INTERVALS: dict[str, KlineInterval] = {
    interval.name: interval
    for interval in (
        _fixed("1m", "1m", _MINUTE),
        _fixed("3m", "1m", 3 * _MINUTE),
        _fixed("5m", "5m", 5 * _MINUTE),
        _fixed("15m", "15m", 15 * _MINUTE),
        _fixed("30m", "1m", 30 * _MINUTE),
        _fixed("1h", "1h", 60 * _MINUTE),
        _fixed("2h", "1h", 120 * _MINUTE),
        _fixed("4h", "4h", 240 * _MINUTE),
        _fixed("6h", "1h", 360 * _MINUTE),
        _fixed("8h", "1h", 480 * _MINUTE),
        _fixed("12h", "1h", 720 * _MINUTE),
        _fixed("1d", "1d", _DAY),
        _fixed("3d", "1d", 3 * _DAY),
        _fixed("1w", "1d", 7 * _DAY, _MONDAY_OFFSET),
        KlineInterval("1M", "1d", _month_start, _next_month),
    )
}


@dataclass(frozen=True, slots=True)
class Kline:
    """One Binance candle: ``[start_ms, end_ms)``, OHLCV, trade count, and whether it closed."""

    start_ms: int
    end_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int
    closed: bool


def kline_of(candle: Candle, interval: KlineInterval) -> Kline:
    """A base-series candle as a kline of its own interval."""
    return Kline(
        candle.start_ms,
        interval.end(candle.start_ms),
        candle.open,
        candle.high,
        candle.low,
        candle.close,
        candle.volume,
        candle.trades,
        candle.closed,
    )


def aggregate(candles: Iterable[Candle], interval: KlineInterval, now_ms: int) -> list[Kline]:
    """Group base candles (oldest first) into ``interval``'s buckets.

    A bucket is closed once ``now_ms`` has passed its end. Its open is that of
    the oldest base candle held: a bucket reaching back before the history
    starts covers only what the history has.
    """
    klines: list[Kline] = []
    current: list[Candle] = []
    start = 0
    for candle in candles:
        bucket = interval.start(candle.start_ms)
        if current and bucket != start:
            klines.append(_merge(current, start, interval.end(start), now_ms))
            current = []
        start = bucket
        current.append(candle)
    if current:
        klines.append(_merge(current, start, interval.end(start), now_ms))
    return klines


def _merge(candles: list[Candle], start: int, end: int, now_ms: int) -> Kline:
    return Kline(
        start,
        end,
        candles[0].open,
        max(candle.high for candle in candles),
        min(candle.low for candle in candles),
        candles[-1].close,
        sum(candle.volume for candle in candles),
        sum(candle.trades for candle in candles),
        end <= now_ms,
    )
