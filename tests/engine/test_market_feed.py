"""The market process's Unix-socket feed and the workers' relay (`serve --workers`, no Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from mdactors.adapters.redis_history import encode_tick
from mdactors.domain.tick import Tick
from mdactors.engine.market import Market
from mdactors.engine.market_feed import FeedPublisher, FeedRelay, decode_lines, encode_lines
from tests.conftest import wait_for

SYMBOLS = ("BTC/USD", "ETH/USD")

pytestmark = pytest.mark.timeout(30)


def same(a: Tick, b: Tick) -> bool:
    """Equal field by field (``Tick`` compares by identity)."""
    return (a.symbol, encode_tick(a)) == (b.symbol, encode_tick(b))


def market() -> Market:
    return Market(SYMBOLS, 0.1, seed=3)


def step(source: Market, rounds: int) -> list[Tick]:
    """Publish ``rounds`` new ticks per symbol; all of them, in order."""
    made = []
    for _ in range(rounds):
        for actor in source.actors.values():
            made.append(actor.step())
            actor.publish(made[-1])
    return made


@asynccontextmanager
async def publishing(source: Market, path: str, **options: float) -> AsyncIterator[FeedPublisher]:
    publisher = FeedPublisher(source, path, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(publisher.run)
        yield publisher
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def relaying(target: Market, path: str) -> AsyncIterator[FeedRelay]:
    relay = FeedRelay(target, path)
    async with trio.open_nursery() as nursery:
        await nursery.start(relay.run)
        yield relay
        nursery.cancel_scope.cancel()


def test_lines_round_trip_and_bad_lines_are_counted() -> None:
    source = market()
    step(source, 3)
    ticks = [actor.latest for actor in source.actors.values()]
    lines = encode_lines(ticks).split(b"\n")
    assert lines[-1] == b""
    garbage = [
        b"BTC/USD\t[1,2",
        b"\xff\t[]",
        b"no tab",
        b"BTC/USD\t" + b"[" * 60_000,  # deep nesting: not a crash
        b'BTC/USD\t["9",' + lines[0].split(b",", 1)[1],  # a string where the seq goes
    ]
    decoded, bad = decode_lines([*lines[:-1], *garbage])
    assert len(decoded) == len(ticks) and all(map(same, decoded, ticks))
    assert bad == len(garbage)


async def test_a_worker_serves_the_market_process_ticks(tmp_path: Path) -> None:
    source, worker = market(), Market(SYMBOLS, 0.1, seed=99)  # the worker's own model differs
    path = str(tmp_path / "market.sock")
    step(source, 5)
    btc = source.actor("BTC/USD")
    async with relaying(worker, path) as relay:  # before the market process: it waits
        await trio.sleep(0.3)
        assert not relay.connected and relay.describe()["status"] == "degraded"
        async with publishing(source, path):
            await wait_for(lambda: relay.connected)
            for key in SYMBOLS:  # each symbol's latest tick first
                await wait_for(
                    lambda key=key: same(worker.actor(key).latest, source.actor(key).latest)
                )
            first = btc.latest.seq + 1
            reader = worker.actor("BTC/USD").topic.reader(from_latest=False)
            made = {(t.symbol, t.seq): t for t in step(source, 200)}
            await wait_for(lambda: same(worker.actor("BTC/USD").latest, btc.latest))
            got, skipped = reader.take(1_000)
            assert skipped == 0
            assert [t.seq for t in got] == list(range(first, first + 200))  # every tick, in order
            # the market process's ticks, not the worker's own model's
            assert all(same(made[t.symbol, t.seq], t) for t in got)
            assert relay.relayed["BTC/USD"] == 201 and relay.describe()["status"] == "ok"
            assert 0 <= relay.describe()["relay_lag_seconds"] < 60  # type: ignore[operator]
        await wait_for(lambda: relay.lost == 1)
        assert not relay.connected
        async with publishing(source, path):  # the market process is back: resume
            step(source, 3)
            eth = source.actor("ETH/USD")
            await wait_for(lambda: same(worker.actor("ETH/USD").latest, eth.latest))


async def test_malformed_lines_are_skipped_and_the_feed_goes_on(tmp_path: Path) -> None:
    source, worker = market(), market()
    step(source, 2)
    good = encode_lines([source.actor("BTC/USD").latest])
    path = str(tmp_path / "raw.sock")
    listener = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await listener.bind(path)
    listener.listen(1)
    async with relaying(worker, path) as relay:
        connection, _ = await listener.accept()
        with connection:
            await connection.send(b"BTC/USD\tnot json\n\xfe\xff\n" + good[:10])
            await connection.send(good[10:])  # a line split over two reads
            await wait_for(lambda: relay.relayed["BTC/USD"] == 1)
            assert relay.malformed == 2
            assert same(worker.actor("BTC/USD").latest, source.actor("BTC/USD").latest)
            await connection.send(b"x" * 5_000)  # no newline: a runaway line drops the link
            await wait_for(lambda: relay.lost == 1)
    listener.close()


async def test_a_worker_that_stops_reading_is_disconnected(tmp_path: Path) -> None:
    source = market()
    path = str(tmp_path / "market.sock")
    async with publishing(source, path, stall_timeout=0.3) as publisher:
        stuck = await trio.open_unix_socket(path)  # never reads
        await wait_for(lambda: publisher.workers == 1)
        with trio.fail_after(10):
            while publisher.workers:  # fill the socket buffers until the publisher gives up
                step(source, 50)
                await trio.sleep(0.01)
        await stuck.aclose()


async def test_a_restarted_market_process_and_republished_ticks_are_followed(
    tmp_path: Path,
) -> None:
    first, worker = market(), market()
    path = str(tmp_path / "market.sock")
    step(first, 30)
    async with relaying(worker, path) as relay:
        async with publishing(first, path) as publisher:
            await wait_for(
                lambda: same(worker.actor("BTC/USD").latest, first.actor("BTC/USD").latest)
            )
            assert publisher.describe()["workers"] == 1
            btc = first.actor("BTC/USD")
            btc.publish(btc.latest)  # a republish (the stale-feed disruption): same seq again
            await wait_for(lambda: relay.relayed["BTC/USD"] == 2)
        await wait_for(lambda: relay.lost == 1)
        second = market()  # a new market process: its sequence starts again
        step(second, 2)
        async with publishing(second, path):
            await wait_for(
                lambda: same(worker.actor("BTC/USD").latest, second.actor("BTC/USD").latest)
            )
            assert worker.actor("BTC/USD").latest.seq < 30


async def test_heartbeats_keep_a_quiet_feed_up_and_a_silent_one_is_left(tmp_path: Path) -> None:
    source, worker = market(), market()
    path = str(tmp_path / "market.sock")
    relay = FeedRelay(worker, path, heartbeat=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(relay.run)
        async with publishing(source, path, heartbeat=0.05):
            await wait_for(lambda: relay.connected)
            await trio.sleep(0.5)  # no ticks for 10 heartbeats: still connected
            assert relay.lost == 0 and relay.malformed == 0
        hung = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await hung.bind(path)  # a market process that accepts and then says nothing
        hung.listen(1)
        connection, _ = await hung.accept()
        await wait_for(lambda: relay.lost == 2)  # the publisher's exit, then the silence
        connection.close()
        hung.close()
        nursery.cancel_scope.cancel()
