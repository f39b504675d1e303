"""Service discovery in Redis, in the three schemes the ecosystem reads.

- ``services`` (the Go services'): ``services:{SERVICE_NAME}:{instance_id}``
  holds a JSON record (SET EX ``ttl``) and the instance is a member of the set
  ``service_list:{SERVICE_NAME}``. The Go client's ``GetHealthyInstances``
  keeps a record only when ``health == "healthy"`` and ``status == "active"``.
- ``registry`` (the Python services'): the hash ``registry:services:{name}``
  with exactly the nine fields their ``ServiceInfo(**hash)`` takes (name,
  version, host, http_port, grpc_port, status, metadata, registered_at,
  last_heartbeat), EXPIRE 3 × heartbeat.
- ``adapter`` (the market-data data adapter's): ``{namespace}:service:{id}``,
  a JSON record with the adapter's Go field names, and
  ``{namespace}:heartbeat:{id}``, the epoch seconds of the last heartbeat, both
  SET EX ``ttl``.

A heartbeat rewrites every chosen record each ``heartbeat`` seconds with the
service's current health and status; the drain rewrites them at once and the
shutdown deletes them. :func:`discover` lists live ``services`` records with
SCAN (never KEYS) and drops those whose heartbeat is older than
``stale_after``.

The sync redis-py client runs in worker threads: nothing here blocks the
event loop, and a Redis outage only delays the next heartbeat.
"""

from __future__ import annotations

import calendar
import json
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
import trio

__all__ = [
    "InstanceRecord",
    "Registrar",
    "discover",
    "ecosystem_status",
    "record_key",
]

log = logging.getLogger("mdactors.discovery")

STALE_AFTER_S = 60.0

_STATUS_BY_PHASE = {
    "starting": "starting",
    "serving": "active",
    "draining": "draining",
    "stopped": "inactive",
}


def ecosystem_status(phase: str) -> str:
    """The ``status`` the ecosystem reads for a lifecycle phase: ``active`` while serving,
    else ``starting``, ``draining`` or ``inactive``."""
    return _STATUS_BY_PHASE.get(phase, phase)


def record_key(service: str, instance_id: str) -> str:
    """The key of one instance's record."""
    return f"services:{service}:{instance_id}"


def _list_key(service: str) -> str:
    return f"service_list:{service}"


def _hash_key(service: str) -> str:
    return f"registry:services:{service}"


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@dataclass
class InstanceRecord:
    """What an instance publishes about itself."""

    service_name: str
    service_version: str
    instance_id: str
    address: str
    http_port: int
    grpc_port: int
    ws_port: int
    environment: str
    registered_at: float
    tags: list[str] = field(default_factory=list)

    def _protocols(self) -> dict[str, str]:
        return {
            "http": f"http://{self.address}:{self.http_port}",
            "grpc": f"{self.address}:{self.grpc_port}",
            "websocket": f"ws://{self.address}:{self.ws_port}",
        }

    def to_json(self, health: str, status: str, now: float) -> str:
        """The ``services`` JSON record, with ``health`` and ``status`` as of ``now``.

        ``port`` is the HTTP port, as the old service wrote it (the Go client's
        default endpoint); ``metadata`` values are strings (Go reads a
        ``map[string]string``).
        """
        return json.dumps(
            {
                "service_name": self.service_name,
                "service_version": self.service_version,
                "instance_id": self.instance_id,
                "address": self.address,
                "port": self.http_port,
                "grpc_port": self.grpc_port,
                "http_port": self.http_port,
                "health": health,
                "status": status,
                "registered_at": _iso(self.registered_at),
                "last_heartbeat": _iso(now),
                "metadata": {
                    "environment": self.environment,
                    "ws_port": str(self.ws_port),
                    "protocols": "grpc,http,connect,sse,websocket",
                },
                "tags": self.tags,
            }
        )

    def to_hash(self, health: str, status: str, now: float) -> dict[str, str]:
        """The nine fields of the ``registry:services:{name}`` hash, as the Python services
        write them: ``status`` is the health while active, else the status."""
        metadata = {
            "environment": self.environment,
            "capabilities": ["http", "grpc", "metrics", "health", "connect", "sse", "websocket"],
            "protocols": self._protocols(),
        }
        return {
            "name": self.service_name,
            "version": self.service_version,
            "host": self.address,
            "http_port": str(self.http_port),
            "grpc_port": str(self.grpc_port),
            "status": health if status == "active" else status,
            "metadata": json.dumps(metadata),
            "registered_at": str(self.registered_at),
            "last_heartbeat": str(now),
        }

    def to_adapter_json(self, health: str, status: str, now: float) -> str:
        """The data adapter's record: its Go struct's field names (it has no JSON tags)."""
        return json.dumps(
            {
                "ServiceName": self.service_name,
                "ServiceID": self.instance_id,
                "Address": self.address,
                "Port": self.http_port,
                "Version": self.service_version,
                "Metadata": {
                    "environment": self.environment,
                    "grpc_port": str(self.grpc_port),
                    "ws_port": str(self.ws_port),
                    "health": health,
                    "status": status,
                },
                "RegisteredAt": _iso(self.registered_at),
                "LastHeartbeat": _iso(now),
            }
        )


def advertised_address(host: str, advertise: str) -> str:
    """The routable address: ``advertise`` if set, the bind host if specific, else the host name."""
    if advertise:
        return advertise
    if host not in {"0.0.0.0", "::", ""}:
        return host
    return socket.gethostname()


class Registrar:
    """Registers this instance, keeps the records fresh, deregisters on the way out.

    ``health`` returns ``(health, status)`` strings in the ecosystem's values,
    e.g. ``("healthy", "active")``; it is read at every heartbeat so the
    records follow the service's real state. ``schemes`` chooses the records
    written (``services``, ``registry``, ``adapter``; see the module docstring).
    """

    def __init__(
        self,
        client: redis.Redis,
        record: InstanceRecord,
        health: Callable[[], tuple[str, str]],
        *,
        heartbeat: float = 15.0,
        ttl: float = 30.0,
        schemes: Sequence[str] = ("services",),
        namespace: str = "market_data",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.record = record
        self.health = health
        self.heartbeat = heartbeat
        self.ttl = ttl
        self.schemes = tuple(schemes)
        self.namespace = namespace
        self.clock = clock
        self.registered = False
        self._failing = False

    def _adapter_keys(self) -> tuple[str, str]:
        instance = self.record.instance_id
        return f"{self.namespace}:service:{instance}", f"{self.namespace}:heartbeat:{instance}"

    def publish(self) -> None:
        """Write every chosen record (register or heartbeat) in one pipeline."""
        health, status = self.health()
        now = self.clock()
        record = self.record
        service = record.service_name
        ttl = int(self.ttl)
        pipe = self.client.pipeline(transaction=False)
        if "services" in self.schemes:
            # SET ... EX is SETEX (redis-py deprecates the setex helper).
            pipe.set(
                record_key(service, record.instance_id),
                record.to_json(health, status, now),
                ex=ttl,
            )
            pipe.sadd(_list_key(service), record.instance_id)
        if "registry" in self.schemes:
            pipe.hset(_hash_key(service), mapping=record.to_hash(health, status, now))
            pipe.expire(_hash_key(service), int(3 * self.heartbeat))
        if "adapter" in self.schemes:
            service_key, heartbeat_key = self._adapter_keys()
            pipe.set(service_key, record.to_adapter_json(health, status, now), ex=ttl)
            pipe.set(heartbeat_key, int(now), ex=ttl)
        pipe.execute()
        self.registered = True

    def withdraw(self) -> None:
        """Delete every chosen record (and the set membership)."""
        service = self.record.service_name
        pipe = self.client.pipeline(transaction=False)
        if "services" in self.schemes:
            pipe.delete(record_key(service, self.record.instance_id))
            pipe.srem(_list_key(service), self.record.instance_id)
        if "registry" in self.schemes:
            pipe.delete(_hash_key(service))
        if "adapter" in self.schemes:
            pipe.delete(*self._adapter_keys())
        pipe.execute()
        self.registered = False

    async def _publish_logged(self) -> None:
        try:
            await trio.to_thread.run_sync(self.publish)
        except redis.RedisError as error:
            if not self._failing:
                log.warning(
                    "discovery heartbeat failing",
                    extra={"event": "discovery_degraded", "error": type(error).__name__},
                )
            self._failing = True
            return
        if self._failing:
            log.info("discovery heartbeat restored", extra={"event": "discovery_restored"})
        self._failing = False

    async def run(
        self,
        status_changed: trio.Event | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Register, then heartbeat until cancelled; deregister on the way out.

        When ``status_changed`` fires (the drain starting) the record is
        rewritten at once rather than at the next heartbeat.
        """
        await self._publish_logged()
        log.info(
            "registered",
            extra={"event": "registered", "instance_id": self.record.instance_id},
        )
        task_status.started()
        pending = status_changed
        try:
            while True:
                with trio.move_on_after(self.heartbeat):
                    if pending is not None:
                        await pending.wait()
                        pending = None
                    else:
                        await trio.sleep_forever()
                await self._publish_logged()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(3):
                try:
                    await trio.to_thread.run_sync(self.withdraw)
                    log.info("deregistered", extra={"event": "deregistered"})
                except redis.RedisError as error:
                    log.warning(
                        "deregistration failed; the record expires by its TTL",
                        extra={"event": "deregister_failed", "error": type(error).__name__},
                    )


def discover(
    client: redis.Redis,
    service: str,
    *,
    now: float | None = None,
    stale_after: float = STALE_AFTER_S,
) -> list[dict[str, Any]]:
    """Live instances of ``service``: records found by SCAN, stale ones dropped."""
    now = time.time() if now is None else now
    keys = list(client.scan_iter(match=f"services:{service}:*", count=200))
    if not keys:
        return []
    instances = []
    for raw in client.mget(keys):
        if raw is None:
            continue
        try:
            record = json.loads(raw)
            beat = calendar.timegm(time.strptime(record["last_heartbeat"], "%Y-%m-%dT%H:%M:%SZ"))
        except (ValueError, KeyError, TypeError):
            continue
        if now - beat <= stale_after:
            instances.append(record)
    return sorted(instances, key=lambda record: record.get("instance_id", ""))
