"""The engine alone: deliveries/s from one Topic to N in-process readers (no sockets).

Each reader is a trio task doing what a stream does before it writes: wait
on its :class:`~mdactors.engine.subscription.Subscription` (what gRPC, WS
and SSE streams use while behind), or on a bare
:class:`~mdactors.engine.topic.Reader` (``kind="reader"``), then take the
pending ticks. With ``kind="fanout"`` the readers are members of the Topic's
:class:`~mdactors.engine.fanout.FanOut` (what caught-up gRPC and WS streams
use): one task takes each member's ticks in one pass per publish. The publisher publishes
one tick, then yields until every reader has taken it (each tick reaches
every reader on its own, as live ticks far apart do), then publishes the
next. A delivery is one tick taken by one reader. The time is cut into
rounds; the best round is reported next to the median (other load on the
machine only ever slows a round down, so the best is the least disturbed).
"""

from __future__ import annotations

import statistics
import time
from functools import partial

import trio

from mdactors.domain.tick import Tick
from mdactors.engine.fanout import FanOut, FanOuts
from mdactors.engine.subscription import Subscription
from mdactors.engine.topic import Reader, Topic

__all__ = ["engine_deliveries"]


_ROUND_S = 0.25


class _Member:
    """A fan-out member that only takes its ticks (a stream's work before it writes)."""

    __slots__ = ("fast", "reader")

    def __init__(self, reader: Reader[Tick]) -> None:
        self.reader = reader
        self.fast = True

    def wake_writer(self) -> None:
        self.fast = False


class _CountingFanOut(FanOut[_Member]):
    """Counts the ticks its members take into ``delivered[0]``."""

    def __init__(self, key: str, topic: Topic[Tick], delivered: list[int]) -> None:
        super().__init__(key, topic)
        self.delivered = delivered

    def fan_out(self) -> None:
        for member in self.members:
            if member.fast:
                self.catch_up(member)

    def catch_up(self, member: _Member) -> None:
        ticks, _ = member.reader.take(256)
        self.delivered[0] += len(ticks)


async def _run(readers: int, seconds: float, kind: str) -> dict[str, float]:
    topic: Topic[Tick] = Topic("BTC/USD")
    tick = Tick("BTC/USD", 0, 1.0, 1.0, 1.0, 0.0, 0, 0.0, 0.0, 1.0, 1.0, 0.0)
    delivered = [0]
    published = 0

    async def subscriber() -> None:
        with Subscription({"BTC/USD": topic}) as subscription:
            while True:
                await subscription.wait()
                for _, ticks, _ in subscription.take(256):
                    delivered[0] += len(ticks)

    async def reader() -> None:
        cursor = topic.reader()
        while True:
            ticks, _ = await cursor.next_batch(256)
            delivered[0] += len(ticks)

    async with trio.open_nursery() as nursery:
        if kind == "fanout":
            fan_outs = FanOuts(partial(_CountingFanOut, delivered=delivered))
            fan_outs.nursery = nursery
            for _ in range(readers):
                fan_outs.join(_Member(topic.reader(from_latest=False)), topic.name, topic)
        for _ in range(readers if kind != "fanout" else 0):
            nursery.start_soon(reader if kind == "reader" else subscriber)
        await trio.sleep(0.1)
        rates: list[float] = []
        cpu_ns: list[float] = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or not rates:
            delivered[0] = 0
            started_cpu, started = time.process_time(), time.perf_counter()
            round_end = started + min(_ROUND_S, seconds)
            while time.perf_counter() < round_end:
                topic.publish(tick)
                published += 1
                target = delivered[0] + readers
                while delivered[0] < target:
                    await trio.lowlevel.checkpoint()
            elapsed = time.perf_counter() - started
            rates.append(delivered[0] / elapsed)
            cpu_ns.append((time.process_time() - started_cpu) / max(1, delivered[0]) * 1e9)
        nursery.cancel_scope.cancel()
    return {
        "kind": kind,
        "readers": readers,
        "published": published,
        "rounds": len(rates),
        "deliveries_per_s_best": round(max(rates)),
        "deliveries_per_s_median": round(statistics.median(rates)),
        "cpu_ns_per_delivery_best": round(min(cpu_ns)),
    }


def engine_deliveries(readers: int, seconds: float, kind: str = "subscription") -> dict[str, float]:
    """Deliveries/s of one Topic to ``readers`` readers (``subscription``, ``reader``
    or ``fanout``)."""
    return trio.run(_run, readers, seconds, kind)
