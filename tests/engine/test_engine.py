"""The engine: Topic fan-out, actors on an absolute cadence, the shared market, the recorder."""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing

from mdactors.adapters.history import MemoryHistory
from mdactors.engine.market import Market, UnknownSymbol
from mdactors.engine.recorder import Recorder
from mdactors.engine.subscription import StreamClosed, StreamRegistry, Subscription, TooManyStreams
from mdactors.engine.topic import Topic, TopicClosed

BASE_NS = 1_700_000_000 * 1_000_000_000 - 30 * 1_000_000_000  # 30 s before a minute boundary


def trio_wall_clock() -> int:
    """A wall clock that follows trio's (autojump) clock."""
    return BASE_NS + int(trio.current_time() * 1e9)


def test_topic_capacity_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError):
        Topic("x", 100)


async def test_every_reader_sees_every_item_in_order() -> None:
    topic: Topic[int] = Topic("t", 16)
    readers = [topic.reader() for _ in range(50)]
    for value in range(10):
        topic.publish(value)
    for reader in readers:
        items, gap = reader.take(64)
        assert items == list(range(10))
        assert gap == 0


async def test_reader_that_falls_a_ring_behind_skips_and_counts_the_gap() -> None:
    topic: Topic[int] = Topic("t", 8)
    reader = topic.reader()
    for value in range(20):
        topic.publish(value)
    items, gap = reader.take(64)
    assert items == list(range(12, 20))
    assert gap == 12
    assert reader.missed == 12


async def test_take_with_a_small_limit_conflates_to_the_newest() -> None:
    topic: Topic[int] = Topic("t", 8)
    reader = topic.reader()
    for value in range(5):
        topic.publish(value)
    assert reader.take(1) == ([4], 4)


async def test_new_reader_starts_from_the_latest_item() -> None:
    topic: Topic[int] = Topic("t", 8)
    topic.publish(1)
    topic.publish(2)
    assert topic.reader().take(10) == ([2], 0)
    assert topic.reader(from_latest=False).take(10) == ([], 0)


async def test_waiting_readers_wake_on_publish_and_end_on_close() -> None:
    topic: Topic[int] = Topic("t", 8)
    received: list[int] = []

    async def consume() -> None:
        reader = topic.reader(from_latest=False)
        try:
            while True:
                items, _ = await reader.next_batch()
                received.extend(items)
        except TopicClosed:
            received.append(-1)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            topic.publish(7)
            await trio.testing.wait_all_tasks_blocked()
            topic.publish(8)
            topic.close()
    assert received == [7, 8, -1]
    with pytest.raises(TopicClosed):
        topic.publish(9)


async def test_actor_keeps_an_absolute_cadence(autojump_clock: trio.testing.MockClock) -> None:
    market = Market(["BTC/USD"], 0.25, seed=1, wall_clock=trio_wall_clock)
    actor = market.actor("BTC/USD")
    async with trio.open_nursery() as nursery:
        await nursery.start(market.run)
        start = trio.current_time()
        await trio.sleep(100.0 + 0.1)
        nursery.cancel_scope.cancel()
    # one tick at construction, then exactly one per interval: 400 in 100 s
    assert actor.latest.seq == 1 + 400
    assert trio.current_time() - start == pytest.approx(100.1)


async def test_actor_interval_change_applies_to_the_next_tick(
    autojump_clock: trio.testing.MockClock,
) -> None:
    market = Market(["ETH/USD"], 1.0, seed=1, wall_clock=trio_wall_clock)
    actor = market.actor("ETH/USD")
    async with trio.open_nursery() as nursery:
        await nursery.start(market.run)
        await trio.sleep(10.5)
        assert actor.latest.seq == 11
        actor.interval = 0.1
        await trio.sleep(2.0)
        nursery.cancel_scope.cancel()
    # the tick already scheduled for t=11 keeps its deadline, then every 0.1 s to t=12.5
    assert actor.latest.seq == pytest.approx(11 + 1 + 15, abs=1)


async def test_ticks_are_consistent(autojump_clock: trio.testing.MockClock) -> None:
    market = Market(["BTC/USD", "USDT/USD"], 0.1, seed=9, wall_clock=trio_wall_clock)
    ticks = []
    async with trio.open_nursery() as nursery:
        await nursery.start(market.run)
        reader = market.actor("BTC/USD").topic.reader()
        while len(ticks) < 500:
            batch, gap = await reader.next_batch()
            assert gap == 0
            ticks.extend(batch)
        nursery.cancel_scope.cancel()
    for previous, tick in itertools.pairwise(ticks):
        assert tick.seq == previous.seq + 1
        assert tick.ts_ns > previous.ts_ns
        assert tick.change == pytest.approx(tick.price - previous.price, abs=0.011)
        # Not every tick prints (trades arrive on the day's rhythm); print ids have no holes.
        assert tick.trades == previous.trades + (1 if tick.volume > 0 else 0)
    for tick in ticks:
        assert 0 < tick.bid < tick.ask
        assert tick.day_low <= tick.price <= tick.day_high
        assert tick.volume >= 0


async def test_seeded_markets_are_reproducible(autojump_clock: trio.testing.MockClock) -> None:
    def prices(seed: int) -> list[float]:
        market = Market(["BTC/USD", "ETH/USD"], 1.0, seed=seed, wall_clock=trio_wall_clock)
        actor = market.actor("ETH/USD")
        return [actor.step().price for _ in range(100)]

    assert prices(5) == prices(5)
    assert prices(5) != prices(6)


async def test_two_subscribers_see_identical_prices_for_the_same_sequence(
    autojump_clock: trio.testing.MockClock,
) -> None:
    market = Market(["BTC/USD", "ETH/USD"], 0.1, seed=3, wall_clock=trio_wall_clock)
    registry = StreamRegistry(10)
    seen: list[dict[tuple[str, int], float]] = [{}, {}]

    async def subscriber(index: int) -> None:
        topics = {key: market.actor(key).topic for key in market.symbols}
        with registry.open("test", Subscription(topics)) as subscription:
            while len(seen[index]) < 100:
                await subscription.wait()
                for key, ticks, _ in subscription.take(64):
                    for tick in ticks:
                        seen[index][(key, tick.seq)] = tick.price

    async with trio.open_nursery() as nursery:
        await nursery.start(market.run)
        async with trio.open_nursery() as clients:
            clients.start_soon(subscriber, 0)
            clients.start_soon(subscriber, 1)
        nursery.cancel_scope.cancel()
    common = seen[0].keys() & seen[1].keys()
    assert len(common) >= 90
    assert all(seen[0][key] == seen[1][key] for key in common)
    assert registry.active == 0
    assert sum(registry.subscribers.values()) == 0


async def test_registry_enforces_the_limit_and_stops_streams_on_drain() -> None:
    topic = Topic("t", 8)
    registry = StreamRegistry(1)
    with registry.open("ws", Subscription({"t": topic})) as subscription:
        with pytest.raises(TooManyStreams), registry.open("ws", Subscription({"t": topic})):
            pass
        registry.stop_all()
        with pytest.raises(StreamClosed):
            await subscription.wait()
    with pytest.raises(StreamClosed), registry.open("ws", Subscription({"t": topic})):
        pass
    assert registry.active == 0
    assert not topic._listeners


async def test_market_resolves_spellings_and_rejects_unknown_symbols() -> None:
    market = Market(["BTC/USD"], 1.0, seed=1)
    assert market.resolve("btc-usd") == "BTC/USD"
    with pytest.raises(UnknownSymbol):
        market.resolve("ETH")


async def test_recorder_closes_candles_on_time_without_a_new_tick(
    autojump_clock: trio.testing.MockClock,
) -> None:
    market = Market(["BTC/USD"], 1.0, seed=2, wall_clock=trio_wall_clock)
    history = MemoryHistory(1_000)
    recorder = Recorder(market, history)
    recorder.backfill(minutes=10)
    actor = market.actor("BTC/USD")
    boundary_ms = (BASE_NS // 1_000_000 // 60_000 + 1) * 60_000
    async with trio.open_nursery() as nursery:
        await nursery.start(market.run)
        await nursery.start(recorder.run)
        await trio.sleep(20.0)
        # freeze the market: from now on no tick arrives
        actor.interval = 10_000.0
        await trio.sleep(15.0)  # past the minute boundary (30 s after start)
        candles = await history.candles("BTC/USD", "1m", 0, 10**15, 100)
        nursery.cancel_scope.cancel()
    assert candles[-1].end_ms == boundary_ms
    assert candles[-1].closed
    assert len(candles) == 11
    for a, b in itertools.pairwise(candles):
        assert b.start_ms - a.start_ms == 60_000
        assert b.open == pytest.approx(a.close)
    assert recorder.open_candle("BTC/USD", "1m").start_ms == boundary_ms
