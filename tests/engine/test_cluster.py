"""Scale-out over Redis: two instances in one process share the symbols through leases.

Every test runs its own ``redis-server`` (the ``redis_server`` fixture); the
instances tick every 20 ms with a 1 s lease renewed every 300 ms, so a dead
owner's symbols must be taken over within about 1.3 s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from itertools import pairwise

import pytest
import trio

from mdactors.adapters.redis_cluster import LeaseView
from mdactors.adapters.redis_history import decode_tick
from mdactors.app import Service, build_service
from mdactors.engine.cluster import plan_claims
from mdactors.settings import ConfigError, load_settings
from tests.conftest import TEST_ENV, RedisServer, connect, wait_for

pytestmark = pytest.mark.timeout(60)

SYMBOLS = ("BTC/USD", "ETH/USD")
Ticks = dict[str, dict[int, float]]


def cluster_env(url: str, name: str) -> dict[str, str]:
    return {
        **TEST_ENV,
        "REDIS_URL": url,
        "CLUSTER_MODE": "redis",
        "CLUSTER_LEASE_TTL": "1s",
        "CLUSTER_RENEW_INTERVAL": "300ms",
        "DEFAULT_SYMBOLS": ",".join(SYMBOLS),
        "PRICE_UPDATE_INTERVAL": "20ms",
        "SERVICE_INSTANCE_NAME": name,
        "DISCOVERY_ENABLED": "false",
        "REDIS_TIMEOUT": "500ms",
    }


class Instance:
    """A service running in its own nursery, which a test may drain or kill."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.scope = trio.CancelScope()

    async def run(self, task_status: trio.TaskStatus[None]) -> None:
        with self.scope:
            await self.service.run(task_status=task_status)

    @property
    def running(self) -> frozenset[str]:
        assert self.service.cluster is not None
        return self.service.cluster.running

    def kill(self) -> None:
        """Stop at once without a drain, as a crash would: leases are left to expire."""
        self.scope.cancel()


@asynccontextmanager
async def instance(url: str, name: str) -> AsyncIterator[Instance]:
    settings = load_settings(environ=cluster_env(url, name), dotenv=None)
    service = build_service(settings, handle_signals=False)
    running = Instance(service)
    async with trio.open_nursery() as nursery:
        await nursery.start(running.run)
        try:
            yield running
        finally:
            service.context.lifecycle.begin_drain()


@contextmanager
def feed_tap(server: RedisServer) -> Iterator[tuple[Ticks, list[str]]]:
    """Everything published on the cluster feed (seq -> price per symbol) and any conflict."""
    seen: Ticks = {symbol: {} for symbol in SYMBOLS}
    conflicts: list[str] = []
    stop = threading.Event()
    pubsub = server.client().pubsub()
    pubsub.psubscribe("market_data:feed:*")

    def listen() -> None:
        while not stop.is_set():
            message = pubsub.get_message(timeout=0.05)
            if message is None or message["type"] != "pmessage":
                continue
            symbol = message["channel"].decode().removeprefix("market_data:feed:")
            for line in message["data"].decode().split("\n"):
                tick = decode_tick(symbol, line)
                price = seen[symbol].setdefault(tick.seq, tick.price)
                if price != tick.price:
                    conflicts.append(f"{symbol} seq {tick.seq}: {price} and {tick.price}")

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    try:
        yield seen, conflicts
    finally:
        stop.set()
        thread.join(5)
        pubsub.close()


async def record_ticker(service: Service, out: Ticks, *, task_status: trio.TaskStatus) -> None:
    """A WebSocket client of ``service``: every ticker seq -> price it receives."""
    async with connect(service) as client:
        await client.request({"type": "subscribe", "symbols": list(SYMBOLS)}, "subscribed")
        task_status.started()
        while True:
            message = await client.next()
            if message["type"] in ("snapshot", "update") and message["channel"] == "ticker":
                out[message["symbol"]][message["seq"]] = message["data"]["price"]


def fresh() -> Ticks:
    return {symbol: {} for symbol in SYMBOLS}


async def balanced(a: Instance, b: Instance) -> None:
    """Wait until each instance simulates one symbol and every symbol has one owner."""
    await wait_for(lambda: len(a.running) == len(b.running) == 1 and a.running != b.running, 5)


def assert_continues(ticks: dict[int, float]) -> None:
    """Sequence numbers go up one by one and no step jumps (e.g. back to the seed price)."""
    seqs = sorted(ticks)
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), "a gap in the sequence"
    for previous, seq in pairwise(seqs):
        move = abs(ticks[seq] / ticks[previous] - 1)
        assert move < 0.05, f"seq {seq} jumped {move:.2%} from {ticks[previous]}"


def test_cluster_mode_needs_redis_and_a_renewal_well_inside_the_ttl() -> None:
    with pytest.raises(ConfigError, match="CLUSTER_MODE"):
        load_settings(environ={"CLUSTER_MODE": "redis"}, dotenv=None)
    env = {"CLUSTER_MODE": "redis", "REDIS_URL": "redis://127.0.0.1:1/0"}
    with pytest.raises(ConfigError, match="CLUSTER_RENEW_INTERVAL"):
        load_settings(environ={**env, "CLUSTER_LEASE_TTL": "2s"}, dotenv=None)
    assert load_settings(environ=env, dotenv=None).cluster_lease_ttl == 3.0
    assert load_settings(environ={}, dotenv=None).cluster_mode == "off"


def test_claims_a_fair_share_and_any_symbol_left_free_for_two_rounds() -> None:
    symbols = ["A", "B", "C", "D"]
    view = LeaseView(2, frozenset({"A"}), {"A": "me", "B": None, "C": None, "D": "other"})
    assert len(plan_claims(symbols, view, "me", frozenset())) == 1
    assert sorted(plan_claims(symbols, view, "me", frozenset({"B", "C"}))) == ["B", "C"]
    alone = LeaseView(1, frozenset(), dict.fromkeys(symbols))
    assert sorted(plan_claims(symbols, alone, "me", frozenset())) == symbols


async def test_each_symbol_has_one_owner_and_every_instance_serves_the_same_ticks(
    redis_server: RedisServer,
) -> None:
    with feed_tap(redis_server) as (published, conflicts):
        async with instance(redis_server.url, "a") as a, instance(redis_server.url, "b") as b:
            await balanced(a, b)
            (owned_by_a,) = a.running
            leases = redis_server.client()
            holders = {s: leases.get(f"market_data:lease:{s}").decode() for s in SYMBOLS}
            assert holders[owned_by_a].startswith("a/")
            assert {h.split("/")[0] for h in holders.values()} == {"a", "b"}
            seen_a, seen_b = fresh(), fresh()
            async with trio.open_nursery() as clients:
                await clients.start(record_ticker, a.service, seen_a)
                await clients.start(record_ticker, b.service, seen_b)
                await wait_for(lambda: min(len(seen_b[s]) for s in SYMBOLS) >= 30, 10)
                clients.cancel_scope.cancel()
            metrics = (await a.service.context.metrics.render()).decode()
            assert f'market_data_cluster_owned{{symbol="{owned_by_a}"}} 1.0' in metrics
            assert b.service.cluster is not None  # read while b still relays, not shutting down
            assert b.service.cluster.stats.relay_lag[owned_by_a] < 2.0
    for symbol in SYMBOLS:
        common = seen_a[symbol].keys() & seen_b[symbol].keys()
        assert len(common) >= 20, symbol
        assert {seq: seen_a[symbol][seq] for seq in common} == {
            seq: seen_b[symbol][seq] for seq in common
        }
    assert published[owned_by_a] and not conflicts


async def _take_over(
    redis_server: RedisServer, stop_owner: Callable[[Instance], None]
) -> tuple[float, Ticks, list[str], str]:
    """Stop the owner of a symbol; how long until the other simulates it, and what it served."""
    with feed_tap(redis_server) as (_, conflicts):
        async with instance(redis_server.url, "b") as b:
            async with instance(redis_server.url, "a") as a:
                await balanced(a, b)
                (moved,) = a.running
                seen_b = fresh()
                async with trio.open_nursery() as clients:
                    await clients.start(record_ticker, b.service, seen_b)
                    await wait_for(lambda: len(seen_b[moved]) >= 10, 5)
                    stopped_at = time.monotonic()
                    stop_owner(a)
                    await wait_for(lambda: moved in b.running, 10)
                    failover = time.monotonic() - stopped_at
                    last_relayed = max(seen_b[moved])
                    await wait_for(lambda: max(seen_b[moved]) >= last_relayed + 20, 5)
                    clients.cancel_scope.cancel()
            assert b.running == frozenset(SYMBOLS)
    print(f"failover ({stop_owner.__name__}): {failover * 1000:.0f} ms")
    return failover, seen_b, conflicts, moved


def drain(owner: Instance) -> None:
    owner.service.context.lifecycle.begin_drain()


def kill(owner: Instance) -> None:
    owner.kill()


@pytest.mark.parametrize(("stop_owner", "within"), [(drain, 1.0), (kill, 3.0)])
async def test_the_other_instance_takes_over_and_the_sequence_continues(
    redis_server: RedisServer, stop_owner: Callable[[Instance], None], within: float
) -> None:
    failover, seen_b, conflicts, moved = await _take_over(redis_server, stop_owner)
    assert failover < within
    assert_continues(seen_b[moved])
    assert not conflicts, conflicts[:5]


async def test_without_redis_owned_symbols_keep_ticking_and_relays_go_stale(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mdactors.cluster")
    async with instance(redis_server.url, "a") as a, instance(redis_server.url, "b") as b:
        await balanced(a, b)
        (owned,) = a.running
        (relayed,) = b.running
        market = a.service.context.market
        assert a.service.cluster is not None
        redis_server.stop()
        await wait_for(lambda: a.service.context.checks["cluster"]()["status"] == "degraded", 3)
        stale_seq, owned_seq = market.latest(relayed).seq, market.latest(owned).seq
        await wait_for(lambda: market.latest(owned).seq >= owned_seq + 10, 5)  # keeps ticking
        assert market.latest(relayed).seq == stale_seq, "a relayed symbol goes stale"
        redis_server.start()
        await wait_for(lambda: a.service.cluster.stats.up, 3)
        await wait_for(lambda: market.latest(relayed).seq > stale_seq + 10, 5)
        assert (a.running, b.running) == ({owned}, {relayed}), "owners take their leases back"
    changes = [r.message for r in caplog.records if r.name == "mdactors.cluster"]
    assert (
        changes.count("cluster redis unreachable: simulating owned symbols locally, relays stale")
        == 2
    ), "one line per instance and state change"
