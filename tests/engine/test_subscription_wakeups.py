"""Subscriptions to one topic share its parking lot: wake-ups stay exact."""

from __future__ import annotations

import pytest
import trio

from mdactors.domain.tick import Tick
from mdactors.engine.subscription import StreamClosed, Subscription
from mdactors.engine.topic import Topic


def _tick(seq: int) -> Tick:
    return Tick("BTC/USD", seq, 1.0, 1.0, 1.0, 0.0, seq, 0.0, 0.0, 1.0, 1.0, 0.0)


async def test_stopping_one_subscription_leaves_its_neighbours_waiting() -> None:
    topic: Topic[Tick] = Topic("BTC/USD")
    stopped, kept = Subscription({"BTC/USD": topic}), Subscription({"BTC/USD": topic})
    outcomes: dict[str, str] = {}

    async def wait(name: str, subscription: Subscription) -> None:
        try:
            with subscription:
                await subscription.wait()
            outcomes[name] = "tick"
        except StreamClosed:
            outcomes[name] = "closed"

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait, "stopped", stopped)
        nursery.start_soon(wait, "kept", kept)
        await trio.testing.wait_all_tasks_blocked()
        stopped.stop()
        await trio.testing.wait_all_tasks_blocked()
        assert outcomes == {"stopped": "closed"}
        topic.publish(_tick(1))
    assert outcomes == {"stopped": "closed", "kept": "tick"}
    assert kept.take(8) == [("BTC/USD", [topic.latest()], 0)]


async def test_a_multi_topic_subscription_wakes_on_any_of_its_topics() -> None:
    btc, eth = Topic[Tick]("BTC/USD"), Topic[Tick]("ETH/USD")
    subscription = Subscription({"BTC/USD": btc, "ETH/USD": eth})
    with subscription:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(subscription.wait)
            await trio.testing.wait_all_tasks_blocked()
            eth.publish(_tick(1))
    assert [key for key, _, _ in subscription.take(8)] == ["ETH/USD"]


async def test_a_closed_topic_ends_its_single_topic_subscription() -> None:
    topic: Topic[Tick] = Topic("BTC/USD")
    subscription = Subscription({"BTC/USD": topic})
    ended = trio.Event()

    async def wait() -> None:
        with pytest.raises(StreamClosed):
            await subscription.wait()
        ended.set()

    with subscription:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            topic.close()
    assert ended.is_set()
