"""Service discovery in Redis, in the ecosystem's scheme.

Each instance writes ``services:{SERVICE_NAME}:{instance_id}`` (a JSON record,
SETEX ``ttl`` seconds) and is a member of the set ``service_list:{SERVICE_NAME}``;
a heartbeat rewrites the record every ``heartbeat`` seconds with the
service's current health, and the drain deletes both. Optionally the second
scheme is kept too: the hash ``registry:services:{SERVICE_NAME}`` with
EXPIRE 3 × heartbeat. :func:`discover` lists live instances with SCAN (never
KEYS) and drops records whose heartbeat is older than ``stale_after``.

The sync redis-py client runs in worker threads: nothing here blocks the
event loop, and a Redis outage only delays the next heartbeat.
"""

from __future__ import annotations

import calendar
import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import trio

__all__ = ["InstanceRecord", "Registrar", "discover", "record_key"]

log = logging.getLogger("mdactors.discovery")

STALE_AFTER_S = 60.0


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

    def to_json(self, health: str, status: str, now: float) -> str:
        """The JSON record, with ``health`` and ``status`` as of ``now``."""
        return json.dumps(
            {
                "service_name": self.service_name,
                "service_version": self.service_version,
                "instance_id": self.instance_id,
                "address": self.address,
                "port": self.grpc_port,
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

    def to_hash(self, status: str, now: float) -> dict[str, str]:
        """The fields of the optional ``registry:services:{name}`` hash."""
        return {
            "name": self.service_name,
            "version": self.service_version,
            "host": self.address,
            "http_port": str(self.http_port),
            "grpc_port": str(self.grpc_port),
            "status": status,
            "metadata": json.dumps({"instance_id": self.instance_id, "ws_port": self.ws_port}),
            "registered_at": str(int(self.registered_at)),
            "last_heartbeat": str(int(now)),
        }


def advertised_address(host: str, advertise: str) -> str:
    """The routable address: ``advertise`` if set, the bind host if specific, else the host name."""
    if advertise:
        return advertise
    if host not in {"0.0.0.0", "::", ""}:
        return host
    return socket.gethostname()


class Registrar:
    """Registers this instance, keeps the record fresh, deregisters on the way out.

    ``health`` returns ``(health, status)`` strings, e.g. ``("healthy",
    "serving")``; it is read at every heartbeat so the record follows the
    service's real state.
    """

    def __init__(
        self,
        client: redis.Redis,
        record: InstanceRecord,
        health: Callable[[], tuple[str, str]],
        *,
        heartbeat: float = 15.0,
        ttl: float = 30.0,
        hash_scheme: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.record = record
        self.health = health
        self.heartbeat = heartbeat
        self.ttl = ttl
        self.hash_scheme = hash_scheme
        self.clock = clock
        self.registered = False
        self._failing = False

    def publish(self) -> None:
        """Write the record (register or heartbeat) in one pipeline."""
        health, status = self.health()
        now = self.clock()
        service = self.record.service_name
        pipe = self.client.pipeline(transaction=False)
        # SET ... EX is SETEX (redis-py deprecates the setex helper).
        pipe.set(
            record_key(service, self.record.instance_id),
            self.record.to_json(health, status, now),
            ex=int(self.ttl),
        )
        pipe.sadd(_list_key(service), self.record.instance_id)
        if self.hash_scheme:
            pipe.hset(_hash_key(service), mapping=self.record.to_hash(status, now))
            pipe.expire(_hash_key(service), int(3 * self.heartbeat))
        pipe.execute()
        self.registered = True

    def withdraw(self) -> None:
        """Delete the record and the set membership (and the hash, if kept)."""
        service = self.record.service_name
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(record_key(service, self.record.instance_id))
        pipe.srem(_list_key(service), self.record.instance_id)
        if self.hash_scheme:
            pipe.delete(_hash_key(service))
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
