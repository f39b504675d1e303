"""Service discovery in a real (private) Redis: keys, TTL, heartbeat, status, deregistration."""

from __future__ import annotations

import json
import time

import pytest
import redis
import trio

from mdactors.adapters.discovery import InstanceRecord, Registrar, discover, record_key
from tests.conftest import RedisServer, wait_for


def _record(instance_id: str = "md-1") -> InstanceRecord:
    return InstanceRecord(
        service_name="market-data-simulator",
        service_version="1.2.3",
        instance_id=instance_id,
        address="10.1.2.3",
        http_port=8080,
        grpc_port=50051,
        ws_port=8765,
        environment="test",
        registered_at=time.time(),
        tags=["simulator"],
    )


def test_publish_writes_the_ecosystem_record_with_ttl_and_set_membership(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    registrar = Registrar(client, _record(), lambda: ("healthy", "active"))
    registrar.publish()
    key = record_key("market-data-simulator", "md-1")
    assert key == "services:market-data-simulator:md-1"
    assert 0 < client.ttl(key) <= 30
    record = json.loads(client.get(key))
    assert {
        "service_name", "service_version", "instance_id", "address", "port", "grpc_port",
        "http_port", "health", "status", "registered_at", "last_heartbeat", "metadata", "tags",
    } <= set(record)  # fmt: skip
    assert record["address"] == "10.1.2.3"
    assert (record["grpc_port"], record["http_port"]) == (50051, 8080)
    assert record["health"] == "healthy"
    assert client.smembers("service_list:market-data-simulator") == {b"md-1"}
    registrar.withdraw()
    assert client.get(key) is None
    assert client.smembers("service_list:market-data-simulator") == set()


def test_discover_uses_scan_and_drops_stale_instances(redis_server: RedisServer) -> None:
    client = redis_server.client()
    now = time.time()
    fresh = Registrar(client, _record("md-fresh"), lambda: ("healthy", "active"), clock=lambda: now)
    stale = Registrar(
        client, _record("md-stale"), lambda: ("healthy", "active"), clock=lambda: now - 120
    )
    fresh.publish()
    stale.publish()
    client.set("services:market-data-simulator:garbage", "not json")
    client.set("services:other-service:x", json.dumps({"instance_id": "x"}))
    found = discover(client, "market-data-simulator", now=now)
    assert [record["instance_id"] for record in found] == ["md-fresh"]


def test_hash_scheme_is_written_when_enabled(redis_server: RedisServer) -> None:
    client = redis_server.client()
    registrar = Registrar(
        client,
        _record(),
        lambda: ("healthy", "active"),
        heartbeat=15,
        schemes=("services", "registry"),
    )
    registrar.publish()
    fields = {
        k.decode(): v.decode()
        for k, v in client.hgetall("registry:services:market-data-simulator").items()
    }
    assert fields["name"] == "market-data-simulator"
    assert fields["grpc_port"] == "50051"
    assert float(fields["last_heartbeat"]) > 0
    assert set(json.loads(fields["metadata"])) == {"environment", "capabilities", "protocols"}
    assert 0 < client.ttl("registry:services:market-data-simulator") <= 45


async def test_heartbeat_refreshes_the_ttl_and_follows_health(redis_server: RedisServer) -> None:
    client = redis_server.client()
    key = record_key("market-data-simulator", "md-1")
    state = {"health": ("healthy", "active")}
    registrar = Registrar(client, _record(), lambda: state["health"], heartbeat=0.05)
    drain = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(registrar.run, drain)
        client.expire(key, 5)
        await wait_for(lambda: client.ttl(key) > 5)
        state["health"] = ("degraded", "active")
        await wait_for(lambda: json.loads(client.get(key))["health"] == "degraded")
        nursery.cancel_scope.cancel()
    assert client.get(key) is None, "cancelling the registrar deregisters"


async def test_drain_rewrites_the_status_at_once(redis_server: RedisServer) -> None:
    client = redis_server.client()
    key = record_key("market-data-simulator", "md-1")
    state = {"health": ("healthy", "active")}
    registrar = Registrar(client, _record(), lambda: state["health"], heartbeat=3600)
    drain = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(registrar.run, drain)
        state["health"] = ("healthy", "draining")
        drain.set()
        await wait_for(lambda: json.loads(client.get(key))["status"] == "draining")
        nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_redis_down_does_not_crash_the_registrar(redis_server: RedisServer) -> None:
    client = redis.Redis(port=redis_server.port, socket_timeout=1, socket_connect_timeout=1)
    redis_server.stop()
    registrar = Registrar(client, _record(), lambda: ("healthy", "active"), heartbeat=0.05)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(registrar.run, None)
            assert not registrar.registered
            redis_server.start()
            await wait_for(lambda: registrar.registered)
            nursery.cancel_scope.cancel()
