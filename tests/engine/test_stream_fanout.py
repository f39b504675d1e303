"""The engine's StreamFanOut admitting joining streams, without sockets."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import pytest

from mdactors.adapters.latency_histogram import LatencySeries
from mdactors.domain.tick import Tick
from mdactors.engine.fanout import StreamFanOut
from mdactors.engine.outlet import Batch, Outlet
from mdactors.engine.subscription import StreamRegistry, Subscription
from mdactors.engine.topic import Topic

pytestmark = pytest.mark.timeout(10)

KEY = "A/USD"


def tick(seq: int) -> Tick:
    price = 100.0 + seq
    return Tick(KEY, seq, price, price - 0.5, price + 0.5, 1.0, 0, 0.0, 0.0, price, price, 1.0)


class Stream:
    """A stream whose writes always succeed; its task is a flag."""

    def __init__(self, topic: Topic[Tick], fan_out: StreamFanOut[Any]) -> None:
        subscription = Subscription({KEY: topic})
        latency = LatencySeries((0.1, 1.0, float("inf")))
        self.outlet = Outlet(StreamRegistry(8), latency, "test", subscription, 2.0)
        self.fan_out = fan_out
        self.take_limit = 8
        self.sent_at = 0.0
        self.fast = True
        self.woken = False
        self.written: list[bytes] = []

    def wake_writer(self) -> None:
        self.fast = False
        self.woken = True
        self.fan_out.release(self)

    def rendering(self) -> Hashable:
        return "one"

    def render(self, key: str, items: list[Any]) -> bytes:
        return b",".join(str(item.seq).encode() for item in items)

    def try_write(self, data: bytes) -> int:
        self.written.append(data)
        return len(data)

    def owe(self, rest: memoryview, batch: Batch) -> None:
        raise AssertionError("writes are whole")


async def test_a_stream_joining_behind_goes_back_to_its_task_and_the_others_are_admitted() -> None:
    topic = Topic[Tick](KEY, 64)
    fan_out: StreamFanOut[Any] = StreamFanOut(KEY, topic)
    behind = Stream(topic, fan_out)  # its cursor is where the topic was when it subscribed
    topic.publish(tick(1))
    fan_out.fan_out()  # the fan-out is past tick 1 now
    caught_up = Stream(topic, fan_out)
    caught_up.outlet.take(8)  # its task wrote tick 1
    for stream in (behind, caught_up):
        fan_out.members.add(stream)
        fan_out.catch_up(stream)
    topic.publish(tick(2))
    fan_out.fan_out()
    assert behind.woken and not behind.written, "its own task takes tick 1 and on"
    assert caught_up.written == [b"2"] and not caught_up.woken
