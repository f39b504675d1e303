"""The stream outlet's policy, without sockets: conflation, the slow decision, drops, latency,
and its fast path (:class:`~mdactors.engine.fanout.StreamFanOut`)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from mdactors.adapters.latency_histogram import LatencySeries
from mdactors.domain.tick import Tick
from mdactors.engine.fanout import StreamFanOut
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


# ------------------------------------------------------------------ the fast path


class FakeStream:
    """A stream served by a StreamFanOut: its kernel takes ``accept`` bytes per write
    (``None``: all, ``0``: it would block, ``-1``: the connection is closed)."""

    renders = 0

    def __init__(
        self,
        fan_out: StreamFanOut[FakeStream],
        topic: Topic[Tick],
        streams: StreamRegistry,
        latency: LatencySeries,
        rendering: str = "ticker",
        accept: int | None = None,
    ) -> None:
        self.fan_out = fan_out
        subscription = Subscription({topic.name: topic}, from_latest=False)
        self.outlet = Outlet(
            streams, latency, "test", subscription, SLOW_AFTER, wall_clock_ns=lambda: NOW_NS
        )
        self.reader = subscription.readers[topic.name]
        self.take_limit = 4
        self.sent_at = 0.0
        self.fast = False
        self.accept = accept
        self.written: list[bytes] = []
        self.owed: tuple[bytes, object] | None = None
        self.woken = 0
        self._rendering = rendering
        fan_out.members.add(self)

    def rendering(self) -> str:
        return self._rendering

    def render(self, key: str, items: list[Tick]) -> bytes | None:
        FakeStream.renders += 1
        return b"%s:%s" % (key.encode(), b",".join(b"%d" % tick.seq for tick in items))

    def try_write(self, data: bytes) -> int:
        if self.accept == -1:
            raise BrokenPipeError
        if self.accept == 0:
            raise BlockingIOError
        taken = data if self.accept is None else data[: self.accept]
        self.written.append(taken)
        return len(taken)

    def owe(self, rest: memoryview, batch: object) -> None:
        self.owed = (bytes(rest), batch)

    def park(self) -> None:
        self.fast = True
        self.fan_out.catch_up(self)

    def wake_writer(self) -> None:
        self.woken += 1
        if self.fast:
            self.fast = False
            self.fan_out.release(self)


def fast_path(
    **accepts: int | None,
) -> tuple[StreamFanOut[FakeStream], Topic[Tick], dict[str, FakeStream], StreamRegistry]:
    """A fan-out over one Topic and a parked stream per name (``accept`` by name)."""
    topic = Topic[Tick]("A/USD", 64)
    topic.publish(tick("A/USD", 1))
    fan_out = StreamFanOut[FakeStream]("A/USD", topic)
    streams = StreamRegistry(16)
    latency = LatencySeries((0.001, 0.01, 0.1, 1.0))
    members = {
        name: FakeStream(fan_out, topic, streams, latency, accept=accept)
        for name, accept in accepts.items()
    }
    for member in members.values():
        member.park()
    fan_out.fan_out()  # the pass admits them (nothing new yet)
    return fan_out, topic, members, streams


async def test_caught_up_streams_of_one_rendering_share_one_render_and_one_pass(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fan_out, topic, members, _ = fast_path(a=None, b=None, c=None)
    other = FakeStream(fan_out, topic, members["a"].outlet.streams, members["a"].outlet.latency)
    other._rendering = "book"
    other.park()
    fan_out.fan_out()
    FakeStream.renders = 0
    topic.publish(tick("A/USD", 2, age_s=0.005))
    await trio.sleep(1.0)
    fan_out.fan_out()
    assert FakeStream.renders == 2, "once per rendering, not per stream"
    frames = [member.written[0] for member in members.values()]
    assert frames == [b"A/USD:2"] * 3 and frames[0] is frames[1] is frames[2]
    assert fan_out.writes == 4
    latency = members["a"].outlet.latency
    assert sum(latency.counts) == 4 and latency.sum == pytest.approx(4 * 0.005)
    # A pass leaves the members' own state alone; leaving the fast path brings it up to date.
    member = members["b"]
    assert member.reader.lag == 1 and member.sent_at == 0.0
    member.wake_writer()
    assert member.reader.lag == 0 and member.sent_at == trio.current_time()
    topic.publish(tick("A/USD", 3))
    fan_out.fan_out()
    assert member.written == [b"A/USD:2"], "released: its own task serves it"
    assert members["a"].written[-1] == b"A/USD:3"


async def test_a_write_that_would_block_hands_the_stream_back_with_its_ticks_pending(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fan_out, topic, members, streams = fast_path(quick=None, full=0, gone=-1)
    topic.publish(tick("A/USD", 2))
    fan_out.fan_out()
    assert members["quick"].written == [b"A/USD:2"] and members["quick"].fast
    for name in ("full", "gone"):
        member = members[name]
        assert not member.fast and member.woken == 1 and member.owed is None
        assert member.reader.lag == 1, "nothing went out: the tick waits for its own task"
    assert fan_out.writes == 1
    assert sum(members["quick"].outlet.latency.counts) == 1, "latency of what was delivered"
    assert not streams.dropped


async def test_a_write_taken_in_part_is_owed_to_the_stream_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fan_out, topic, members, _ = fast_path(part=3)
    topic.publish(tick("A/USD", 2))
    fan_out.fan_out()
    member = members["part"]
    assert member.written == [b"A/U"] and not member.fast and member.woken == 1
    assert member.owed is not None
    rest, batch = member.owed
    assert rest == b"SD:2"
    assert [(key, [t.seq for t in items]) for key, items in batch] == [("A/USD", [2])]  # type: ignore[attr-defined]
    assert member.reader.lag == 0, "its bytes are on their way: not taken again"
    assert sum(member.outlet.latency.counts) == 0, "observed once the rest is written"


async def test_a_pass_behind_by_more_than_take_limit_conflates_for_every_member(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fan_out, topic, members, streams = fast_path(a=None, b=None)
    for seq in range(2, 9):  # 7 ticks, 4 per write
        topic.publish(tick("A/USD", seq))
    fan_out.fan_out()
    assert members["a"].written == [b"A/USD:5,6,7,8"] == members["b"].written
    assert streams.dropped[("A/USD", "test", "conflated")] == 2 * 3


async def test_joining_streams_are_served_only_from_where_the_pass_is(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fan_out, topic, members, _ = fast_path(a=None)
    topic.publish(tick("A/USD", 2))
    ahead = FakeStream(fan_out, topic, members["a"].outlet.streams, members["a"].outlet.latency)
    ahead.reader.take(8)  # it took tick 2 itself before parking
    behind = FakeStream(fan_out, topic, members["a"].outlet.streams, members["a"].outlet.latency)
    behind.reader.cursor = 0  # it has tick 1 pending, which the pass is already past
    ahead.park()
    behind.park()
    fan_out.fan_out()
    assert ahead.written == [] and ahead.fast, "joins after the pass it is ahead of"
    assert not behind.fast and behind.woken == 1, "its own task catches it up"
    topic.publish(tick("A/USD", 3))
    fan_out.fan_out()
    assert ahead.written == [b"A/USD:3"] and members["a"].written == [b"A/USD:2", b"A/USD:3"]


async def test_a_failing_render_hands_every_member_of_that_rendering_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fan_out, topic, members, _ = fast_path(a=None, b=None)

    def broken(key: str, items: list[Tick]) -> bytes:
        raise RuntimeError("a rendering bug")

    first = next(iter(fan_out.groups["ticker"].members))
    first.render = broken  # type: ignore[method-assign]
    topic.publish(tick("A/USD", 2))
    fan_out.fan_out()
    for member in members.values():
        assert not member.fast and member.woken == 1
        assert member.reader.lag == 1, "each task renders the tick itself"
