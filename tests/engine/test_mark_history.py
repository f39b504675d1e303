"""Mark-price candles recorded from start-up, and how mark klines splice them in."""

from __future__ import annotations

from mdactors.api.binance.futures_rest import first_whole_bucket, splice
from mdactors.domain.klines import Kline
from mdactors.engine.mark_history import MarkHistory

KEY = "BTC/USD-PERP"
T0 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000  # a minute boundary


def test_minutes_fold_marks_and_the_partial_first_minute_is_left_out():
    marks = MarkHistory({KEY: None}, minutes=10)  # type: ignore[dict-item]
    marks.observe(KEY, T0 + 30_000, 100.0)  # recording begins mid-minute
    assert marks.first_full_ms(KEY) is None
    for second, mark in ((60, 101.0), (75, 103.0), (90, 99.0), (110, 102.0)):
        marks.observe(KEY, T0 + second * 1000, mark)
    marks.close_until(T0 + 180_000)  # minute 2 had no tick: flat at the last mark
    assert marks.first_full_ms(KEY) == T0 + 60_000
    candles = marks.candles(KEY, 0, 2**62)
    assert [c.start_ms for c in candles] == [T0 + 60_000, T0 + 120_000, T0 + 180_000]
    whole = candles[0]
    assert (whole.open, whole.high, whole.low, whole.close) == (
        100.0,
        103.0,
        99.0,
        102.0,
    )  # opens at the last close
    assert whole.closed and candles[1].open == candles[1].close == 102.0
    assert not candles[2].closed  # the forming minute comes last


def test_memory_is_bounded_by_minutes():
    marks = MarkHistory({KEY: None}, minutes=5)  # type: ignore[dict-item]
    for minute in range(50):
        marks.observe(KEY, T0 + minute * 60_000, 100.0 + minute)
    closed = [c for c in marks.candles(KEY, 0, 2**62) if c.closed]
    assert len(closed) == 5 and closed[-1].close == 148.0
    assert marks.first_full_ms(KEY) == closed[0].start_ms


def _kline(start: int, price: float) -> Kline:
    return Kline(start, start + 60_000, price, price, price, price, 0.0, 1, True)


def test_mark_klines_are_traded_buckets_before_the_recording_then_recorded_ones():
    assert first_whole_bucket("1m", T0) == T0
    assert first_whole_bucket("1m", T0 + 1) == T0 + 60_000
    assert first_whole_bucket("1h", T0 + 60_000) % 3_600_000 == 0
    traded = [_kline(T0 + i * 60_000, 1.0) for i in range(10)]
    recorded = [_kline(T0 + i * 60_000, 2.0) for i in range(6, 10)]
    from_ms = T0 + 6 * 60_000
    latest = splice(traded, recorded, from_ms, None, 5)
    assert [k.close for k in latest] == [1.0, 2.0, 2.0, 2.0, 2.0]
    first = splice(traded, recorded, from_ms, T0 + 4 * 60_000, 3)
    assert [k.start_ms for k in first] == [T0 + 4 * 60_000, T0 + 5 * 60_000, T0 + 6 * 60_000]
    assert [k.close for k in first] == [1.0, 1.0, 2.0]
