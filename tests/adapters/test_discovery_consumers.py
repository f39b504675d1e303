"""Our discovery records as the ecosystem's own consumers read them, in a real Redis.

Each consumer's filter and parser is reproduced here as its source writes it:
the Go services' ``GetHealthyInstances`` (``services:{name}:*`` JSON into a
typed struct, heartbeat within 60 s, ``health == "healthy" && status ==
"active"``), the Python services' ``discover_services`` (the
``registry:services:{name}`` hash into ``ServiceInfo(**hash)``, which
rejects any field it does not know), and the data adapter's ``Discover``
(``{namespace}:service:*`` JSON with its Go field names).
"""

from __future__ import annotations

import calendar
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
import redis

from tests.conftest import RedisServer, running_service, wait_for

SERVICE = "market-data-simulator"


def _go_time(text: Any) -> float:
    """Go's ``time.Time`` JSON decoding: RFC 3339 or the record is dropped."""
    if not isinstance(text, str):
        raise TypeError("time must be a string")
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def _go_struct(raw: bytes, types: dict[str, type]) -> dict[str, Any]:
    """``json.Unmarshal`` into a Go struct: a field of the wrong type fails the whole record;
    ``map[string]string`` needs string values; unknown fields are ignored."""
    data = json.loads(raw)
    decoded: dict[str, Any] = {}
    for name, kind in types.items():
        value = data.get(name)
        if value is None:
            continue
        if kind is dict:
            if not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
                raise TypeError(f"{name}: expected map[string]string")
        elif kind is list:
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise TypeError(f"{name}: expected []string")
        elif kind is float:
            decoded[name] = _go_time(value)
            continue
        elif kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"{name}: expected int")
        elif kind is str and not isinstance(value, str):
            raise TypeError(f"{name}: expected string")
        decoded[name] = value
    return decoded


_GO_SERVICE_INFO = {
    "service_name": str, "service_version": str, "instance_id": str, "address": str,
    "port": int, "grpc_port": int, "http_port": int, "health": str, "status": str,
    "registered_at": float, "last_heartbeat": float, "metadata": dict, "tags": list,
}  # fmt: skip


def go_get_healthy_instances(client: redis.Redis, service: str) -> list[dict[str, Any]]:
    """The Go services' ``ServiceDiscovery.GetHealthyInstances``."""
    healthy = []
    for key in client.scan_iter(match=f"services:{service}:*"):
        raw = client.get(key)
        if raw is None:
            continue
        try:
            info = _go_struct(raw, _GO_SERVICE_INFO)
        except (ValueError, TypeError):
            continue
        if time.time() - info["last_heartbeat"] > 60:
            info["health"], info["status"] = "unhealthy", "stale"
        if info.get("health") == "healthy" and info.get("status") == "active":
            healthy.append(info)
    return healthy


@dataclass
class PythonServiceInfo:
    """The Python services' ``ServiceInfo`` (risk monitor, trading engine, test coordinator)."""

    name: str
    version: str
    host: str
    http_port: int
    grpc_port: int
    status: str = "healthy"
    metadata: dict[str, Any] | None = None
    registered_at: float = 0.0
    last_heartbeat: float = 0.0


def python_discover_services(client: redis.Redis, service: str) -> list[PythonServiceInfo]:
    """Their ``ServiceDiscovery.discover_services(name)``, conversions and all."""
    services = []
    for key in client.scan_iter(match=f"registry:services:{service}"):
        data = {k.decode(): v.decode() for k, v in client.hgetall(key).items()}
        if not data:
            continue
        data["metadata"] = json.loads(data["metadata"])
        for field in ("http_port", "grpc_port", "registered_at", "last_heartbeat"):
            data[field] = float(data[field])
        services.append(PythonServiceInfo(**data))
    return services


_ADAPTER_SERVICE_INFO = {
    "ServiceName": str, "ServiceID": str, "Address": str, "Port": int, "Version": str,
    "Metadata": dict, "RegisteredAt": float, "LastHeartbeat": float,
}  # fmt: skip


def adapter_discover(client: redis.Redis, namespace: str, service: str) -> list[dict[str, Any]]:
    """The market-data data adapter's ``RedisServiceDiscovery.Discover``."""
    found = []
    for key in client.scan_iter(match=f"{namespace}:service:*"):
        raw = client.get(key)
        if raw is None:
            continue
        try:
            info = _go_struct(raw, _ADAPTER_SERVICE_INFO)
        except (ValueError, TypeError):
            continue
        if info.get("ServiceName") == service:
            found.append(info)
    return found


async def test_every_consumer_finds_the_serving_instance_and_loses_it_on_drain(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    env = {
        "REDIS_URL": redis_server.url,
        "SERVICE_INSTANCE_NAME": "md-consumers",
        "DISCOVERY_SCHEMES": "services,registry,adapter",
        "SERVICE_DISCOVERY_NAMESPACE": "market_data",
        "DRAIN_DELAY": "1s",
    }
    async with running_service(env) as service:
        await wait_for(lambda: bool(go_get_healthy_instances(client, SERVICE)))
        (go,) = go_get_healthy_instances(client, SERVICE)
        assert go["instance_id"] == "md-consumers"
        assert (go["http_port"], go["grpc_port"]) == (service.ports["http"], service.ports["grpc"])
        assert go["port"] == service.ports["http"]
        assert "grpc" in go["tags"]

        (python,) = python_discover_services(client, SERVICE)
        assert python.status == "healthy"
        assert python.host == "127.0.0.1"
        assert int(python.grpc_port) == service.ports["grpc"]
        assert set(python.metadata or {}) == {"environment", "capabilities", "protocols"}
        http_url = (python.metadata or {})["protocols"]["http"]
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{http_url}/api/v1/health")).status_code == 200

        (adapter,) = adapter_discover(client, "market_data", SERVICE)
        assert adapter["ServiceID"] == "md-consumers"
        assert adapter["Port"] == service.ports["http"]
        beat = int(client.get("market_data:heartbeat:md-consumers"))
        assert abs(beat - time.time()) < 60
        assert 0 < client.ttl("market_data:service:md-consumers") <= 30

        service.context.lifecycle.begin_drain()
        await wait_for(lambda: not go_get_healthy_instances(client, SERVICE))
        assert python_discover_services(client, SERVICE)[0].status == "draining"
    assert adapter_discover(client, "market_data", SERVICE) == []
    assert python_discover_services(client, SERVICE) == []
    assert client.keys("services:*") == []


async def test_only_the_chosen_schemes_are_written(redis_server: RedisServer) -> None:
    client = redis_server.client()
    env = {
        "REDIS_URL": redis_server.url,
        "SERVICE_INSTANCE_NAME": "md-registry-only",
        "DISCOVERY_SCHEMES": "registry",
    }
    async with running_service(env):
        await wait_for(lambda: bool(python_discover_services(client, SERVICE)))
        assert go_get_healthy_instances(client, SERVICE) == []
        assert client.keys("market_data:service:*") == []


async def test_service_ttl_sets_the_record_ttl(redis_server: RedisServer) -> None:
    client = redis_server.client()
    env = {
        "REDIS_URL": redis_server.url,
        "SERVICE_INSTANCE_NAME": "md-ttl",
        "SERVICE_TTL": "90s",
        "HEARTBEAT_INTERVAL": "30s",
    }
    async with running_service(env):
        key = f"services:{SERVICE}:md-ttl"
        await wait_for(lambda: client.get(key) is not None)
        assert 60 < client.ttl(key) <= 90
