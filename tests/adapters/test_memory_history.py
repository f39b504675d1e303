"""The in-memory history: a columnar tick ring and candle rings, bounded."""

from __future__ import annotations

import pytest

from mdactors.adapters.history import MemoryHistory
from mdactors.adapters.tick_ring import TickRing
from mdactors.domain.candles import Candle
from mdactors.domain.tick import Tick


def _tick(seq: int) -> Tick:
    return Tick("BTC/USD", seq, 100.0 + seq, 99.5 + seq, 100.5 + seq, 0.25 * seq, seq * 1_000,
                0.5, 0.1, 200.0, 50.0, 10.0 + seq)  # fmt: skip


def test_ring_round_trips_every_field() -> None:
    ring = TickRing("BTC/USD", 8)
    original = _tick(3)
    ring.append(original)
    (copy,) = ring.latest_in_range(0, 10**12, 10)
    for name in Tick.__dataclass_fields__:
        if name != "wire":
            assert getattr(copy, name) == getattr(original, name), name


def test_ring_keeps_the_newest_capacity_ticks_in_order() -> None:
    ring = TickRing("BTC/USD", 8)
    for seq in range(1, 21):
        ring.append(_tick(seq))
    assert [t.seq for t in ring.latest_in_range(0, 10**12, 100)] == list(range(13, 21))
    assert ring.count == 8


@pytest.mark.parametrize(
    ("start", "end", "limit", "expected"),
    [
        (0, 10**12, 3, [18, 19, 20]),
        (14_000, 16_000, 100, [14, 15, 16]),
        (14_500, 14_900, 100, []),
        (0, 12_000, 100, []),
        (20_000, 20_000, 1, [20]),
    ],
)
def test_ring_range_queries(start: int, end: int, limit: int, expected: list[int]) -> None:
    ring = TickRing("BTC/USD", 8)
    for seq in range(1, 21):
        ring.append(_tick(seq))
    assert [t.seq for t in ring.latest_in_range(start, end, limit)] == expected


async def test_memory_history_answers_ticks_and_candles() -> None:
    history = MemoryHistory(tick_capacity=4, candle_capacity=2)
    history.record_ticks([_tick(seq) for seq in range(1, 7)])
    assert [t.seq for t in await history.ticks("BTC/USD", 0, 10**12, 10)] == [3, 4, 5, 6]
    assert await history.ticks("ETH/USD", 0, 10**12, 10) == []
    candles = [Candle("BTC/USD", "1m", i * 60_000, 1, 1, 1, 1, 1, 1, True) for i in range(3)]
    history.record_candles(candles)
    got = await history.candles("BTC/USD", "1m", 0, 10**12, 10)
    assert [c.start_ms for c in got] == [60_000, 120_000]
    with pytest.raises(ValueError):
        await history.candles("BTC/USD", "7m", 0, 1, 1)
