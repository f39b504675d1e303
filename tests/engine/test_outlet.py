"""The stream outlet's policy, without sockets: conflation, the slow decision, drops, latency."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from mdactors.adapters.latency_histogram import LatencySeries
from mdactors.domain.tick import Tick
from mdactors.engine.outlet import BEHIND_AFTER_S, Outlet, SlowConsumer, write_within
from mdactors.engine.subscription import StreamRegistry, Subscription
from mdactors.engine.topic import Topic

pytestmark = pytest.mark.timeout(10)

SLOW_AFTER = 2.0
NOW_NS = 1_700_000_000 * 1_000_000_000


def tick(key: str, seq: int, age_s: float = 0.0) -> Tick:
    price = 100.0 + seq
    stamp = NOW_NS - int(age_s * 1e9)
    return Tick(key, seq, price, price - 0.5, price + 0.5, 1.0, stamp, 0.0, 0.0, price, price, 1.0)


def outlet_on(*keys: str) -> tuple[Outlet, dict[str, Topic[Tick]], StreamRegistry, LatencySeries]:
    topics = {key: Topic[Tick](key, 64) for key in keys}
    streams = StreamRegistry(4)
    latency = LatencySeries((0.001, 0.01, 0.1, 1.0))
    subscription = Subscription(topics)
    outlet = Outlet(
        streams, latency, "test", subscription, SLOW_AFTER, wall_clock_ns=lambda: NOW_NS
    )
    return outlet, topics, streams, latency


def test_take_newest_keeps_the_newest_tick_per_symbol_and_counts_the_rest() -> None:
    outlet, topics, streams, _ = outlet_on("A/USD", "B/USD")
    for seq in range(1, 6):
        topics["A/USD"].publish(tick("A/USD", seq))
    topics["B/USD"].publish(tick("B/USD", 1))
    newest = dict(outlet.take_newest())
    assert newest["A/USD"].seq == 5 and newest["B/USD"].seq == 1
    assert streams.dropped[("A/USD", "test", "conflated")] == 4
    assert ("B/USD", "test", "conflated") not in streams.dropped
    assert outlet.take_newest() == [], "nothing new: nothing taken"


async def test_a_quick_write_observes_latency_once_per_tick(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outlet, _, _, latency = outlet_on("A/USD")
    started = trio.current_time()
    await trio.sleep(0.001)
    outlet.delivered([tick("A/USD", 1, age_s=0.005), tick("A/USD", 2, age_s=0.5)], started)
    assert sum(latency.counts) == 2
    assert latency.sum == pytest.approx(0.505)
    assert not outlet.behind


async def test_a_slow_write_marks_the_stream_behind_until_a_quick_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outlet, _, _, _ = outlet_on("A/USD")
    started = trio.current_time()
    await trio.sleep(BEHIND_AFTER_S * 2)
    outlet.delivered([tick("A/USD", 1)], started)
    assert outlet.behind
    started = trio.current_time()
    outlet.delivered([tick("A/USD", 2)], started)
    assert not outlet.behind


async def test_a_write_longer_than_the_timeout_ends_the_stream_counting_its_losses(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outlet, topics, streams, latency = outlet_on("A/USD", "B/USD")
    started = trio.current_time()
    for seq in range(1, 4):  # published while the write was stuck
        topics["A/USD"].publish(tick("A/USD", seq))
    await trio.sleep(SLOW_AFTER + 0.1)
    with pytest.raises(SlowConsumer, match=r"took 2\.1 s"):
        outlet.delivered([tick("A/USD", 0)], started)
    assert streams.dropped[("A/USD", "test", "disconnected")] == 3
    assert ("B/USD", "test", "disconnected") not in streams.dropped
    assert sum(latency.counts) == 0, "an update the client did not take is not delivered"


async def test_a_write_of_exactly_the_timeout_is_not_yet_too_slow(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outlet, _, _, _ = outlet_on("A/USD")
    started = trio.current_time()
    await trio.sleep(SLOW_AFTER)
    outlet.delivered([tick("A/USD", 1)], started)
    assert outlet.behind


async def test_a_blocking_write_that_completes_in_time_is_delivered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outlet, _, streams, latency = outlet_on("A/USD")

    async def write() -> None:
        await trio.sleep(BEHIND_AFTER_S * 2)

    await outlet.write(write, [("A/USD", [tick("A/USD", 1, age_s=0.25)])])
    assert sum(latency.counts) == 1 and latency.sum == pytest.approx(0.25)
    assert outlet.behind, "slower than BEHIND_AFTER_S: newest tick per symbol next"
    assert not streams.dropped


async def test_a_blocking_write_not_done_by_the_timeout_is_cancelled_and_ends_the_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outlet, topics, streams, latency = outlet_on("A/USD", "B/USD")
    cancelled = False

    async def stuck() -> None:
        nonlocal cancelled
        try:
            await trio.sleep_forever()
        finally:
            cancelled = True

    for seq in range(1, 3):  # pending behind the stuck write
        topics["B/USD"].publish(tick("B/USD", seq))
    started = trio.current_time()
    with pytest.raises(SlowConsumer, match=r"no update was taken within 2\.0 s") as raised:
        await outlet.write(stuck, [("A/USD", [tick("A/USD", 7), tick("A/USD", 8)])])
    assert trio.current_time() - started == pytest.approx(SLOW_AFTER)
    assert cancelled and not raised.value.completed
    assert streams.dropped[("A/USD", "test", "disconnected")] == 2, "the ticks in the write"
    assert streams.dropped[("B/USD", "test", "disconnected")] == 2, "and every tick pending"
    assert sum(latency.counts) == 0


async def test_write_within_bounds_a_write_that_carries_no_ticks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    await write_within(trio.lowlevel.checkpoint, SLOW_AFTER)
    with pytest.raises(SlowConsumer):
        await write_within(trio.sleep_forever, SLOW_AFTER)


def test_a_non_blocking_write_observes_latency_only() -> None:
    outlet, _, streams, latency = outlet_on("A/USD")
    outlet.observe([("A/USD", [tick("A/USD", 1, age_s=0.01), tick("A/USD", 2, age_s=0.02)])])
    assert sum(latency.counts) == 2 and latency.sum == pytest.approx(0.03)
    assert not streams.dropped and not outlet.behind
