"""The engine alone: deliveries/s from one Topic to N in-process readers (no sockets).

Each reader is a trio task doing what a stream does before it writes: wait
on its :class:`~mdactors.engine.subscription.Subscription`, take the pending
ticks. The publisher publishes one tick and yields, as fast as the readers
keep up. A delivery is one tick taken by one reader.
"""

from __future__ import annotations

import time

import trio

from mdactors.domain.tick import Tick
from mdactors.engine.subscription import Subscription
from mdactors.engine.topic import Topic

__all__ = ["engine_deliveries"]


async def _run(readers: int, seconds: float) -> dict[str, float]:
    topic: Topic[Tick] = Topic("BTC/USD")
    tick = Tick("BTC/USD", 0, 1.0, 1.0, 1.0, 0.0, 0, 0.0, 0.0, 1.0, 1.0, 0.0)
    delivered = [0]
    published = 0

    async def reader() -> None:
        with Subscription({"BTC/USD": topic}) as subscription:
            while True:
                await subscription.wait()
                for _, ticks, _ in subscription.take(256):
                    delivered[0] += len(ticks)

    async with trio.open_nursery() as nursery:
        for _ in range(readers):
            nursery.start_soon(reader)
        await trio.sleep(0.1)
        delivered[0] = 0
        started_cpu, started = time.process_time(), time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            topic.publish(tick)
            published += 1
            await trio.lowlevel.checkpoint()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - started_cpu
        nursery.cancel_scope.cancel()
    return {
        "readers": readers,
        "published": published,
        "deliveries": delivered[0],
        "deliveries_per_s": round(delivered[0] / elapsed),
        "cpu_ns_per_delivery": round(cpu / delivered[0] * 1e9) if delivered[0] else None,
    }


def engine_deliveries(readers: int, seconds: float) -> dict[str, float]:
    """Deliveries/s of one Topic to ``readers`` Subscription readers over ``seconds``."""
    return trio.run(_run, readers, seconds)
