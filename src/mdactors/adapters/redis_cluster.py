"""Symbol leases and the tick relay in Redis, for ``CLUSTER_MODE=redis``.

Key layout (``ns`` is ``CACHE_NAMESPACE``, default ``market_data:``):

- ``{ns}lease:{symbol}`` — string; value = the owner's token, ``PX`` = the
  lease TTL. Taken with ``SET NX PX``; renewed (``PEXPIRE``) and released
  (``DEL``) only by its owner, through compare-and-act Lua scripts.
- ``{ns}cluster:members`` — sorted set of live owner tokens, score = the
  expiry of each member's heartbeat (ms, Redis clock); it sizes fair shares.
- ``{ns}cluster:last`` — hash; field = symbol, value = the last tick its owner
  published, written in the same pipeline as the publish: a new owner
  resumes from it exactly, however late the relayed messages arrive.
- channel ``{ns}feed:{symbol}`` — the owner's ticks: one message per batch,
  one tick per line in the history's JSON-array form
  (:func:`~mdactors.adapters.redis_history.encode_tick`).
- channel ``{ns}cluster:released`` — a symbol each time an owner hands its
  lease back, so the others claim it at once instead of at their next round.

Every method here is blocking (sync redis-py): call them in worker threads
(``trio.to_thread.run_sync``), never on the event loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.client import PubSub

from mdactors.adapters.redis_history import decode_tick, encode_tick
from mdactors.domain.tick import Tick

__all__ = ["ClusterStats", "LeaseView", "RedisCluster"]

LEASE_CHANGES = ("acquired", "lost", "released")

# Renew our lease, or take it back if it expired and nobody took it (Redis restarted).
_RENEW = """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not owner then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Heartbeat this member, forget expired ones, count the live ones (one clock: Redis's).
_MEMBERS = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
return redis.call('ZCARD', KEYS[1])
"""


def _newest(symbol: str, raws: Iterable[bytes | None]) -> Tick | None:
    ticks = [decode_tick(symbol, raw) for raw in raws if raw is not None]
    return max(ticks, key=lambda tick: tick.seq, default=None)


@dataclass(frozen=True, slots=True)
class LeaseView:
    """One renewal round's answer: who is alive and who holds what."""

    members: int
    """Live cluster members, this one included."""
    renewed: frozenset[str]
    """The leases asked to renew that are (still or again) ours."""
    owners: Mapping[str, str | None]
    """Each symbol's current lease holder (``None``: free), after the renewals."""


@dataclass
class ClusterStats:
    """Counters read by metrics and readiness (keys fixed at start: thread-safe to read)."""

    owned: dict[str, bool]
    """Per configured symbol: its lease is ours and confirmed."""
    relayed: dict[str, int]
    """Per symbol, ticks received from the owner and published locally."""
    relay_lag: dict[str, float]
    """Per symbol, seconds from the owner's tick stamp to its local publication (last tick)."""
    lease_changes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LEASE_CHANGES, 0))
    """Leases ``acquired``, ``lost`` (taken by another) and ``released`` (handed over)."""
    published: int = 0
    """Ticks this instance published to the cluster."""
    unpublished: int = 0
    """Owned ticks that never reached the cluster (Redis failed, or the lease unconfirmed)."""
    members: int = 0
    """Live members at the last round."""
    up: bool = False
    """Whether the last lease round reached Redis."""

    def collector(self) -> Collector:
        """Prometheus metrics of these counters, read at scrape time."""
        return _ClusterCollector(self)

    def describe(self) -> dict[str, object]:
        """Readiness details: ``status`` is ``ok`` or ``degraded`` (Redis unreachable)."""
        return {
            "status": "ok" if self.up else "degraded",
            "owned": sum(self.owned.values()),
            "members": self.members,
        }


class _ClusterCollector(Collector):
    def __init__(self, stats: ClusterStats) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        stats = self._stats
        owned = GaugeMetricFamily(
            "market_data_cluster_owned",
            "1 while this instance holds the symbol's lease and simulates it, else 0.",
            labels=["symbol"],
        )
        relayed = CounterMetricFamily(
            "market_data_cluster_relayed",
            "Ticks received from the symbol's owner and published here.",
            labels=["symbol"],
        )
        lag = GaugeMetricFamily(
            "market_data_cluster_relay_lag_seconds",
            "Owner's tick stamp to local publication, last relayed tick.",
            labels=["symbol"],
        )
        for key in stats.owned:
            owned.add_metric([key], int(stats.owned[key]))
            relayed.add_metric([key], stats.relayed[key])
            lag.add_metric([key], stats.relay_lag[key])
        yield owned
        yield relayed
        yield lag
        changes = CounterMetricFamily(
            "market_data_cluster_lease_changes",
            "Leases acquired, lost to another instance, and released (handed over).",
            labels=["change"],
        )
        for change in LEASE_CHANGES:
            changes.add_metric([change], stats.lease_changes[change])
        yield changes
        yield CounterMetricFamily(
            "market_data_cluster_published",
            "Ticks this instance published to the cluster.",
            value=stats.published,
        )
        yield CounterMetricFamily(
            "market_data_cluster_unpublished",
            "Owned ticks that never reached the cluster (Redis failed or lease unconfirmed).",
            value=stats.unpublished,
        )
        yield GaugeMetricFamily(
            "market_data_cluster_members",
            "Live cluster members at the last round.",
            value=stats.members,
        )
        yield GaugeMetricFamily(
            "market_data_cluster_redis_up",
            "1 while the lease rounds reach Redis.",
            value=int(stats.up),
        )


class RedisCluster:
    """The Redis side of the cluster for one instance, identified by ``owner``.

    ``owner`` must be unique per process (the instance id plus a random
    suffix): it is what a lease holds, so two processes can never both
    believe they hold the same lease.
    """

    def __init__(self, client: redis.Redis, owner: str, ttl: float, namespace: str) -> None:
        self.client = client
        self.owner = owner
        self.ttl_ms = max(1, round(ttl * 1000))
        self.namespace = namespace
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._members = client.register_script(_MEMBERS)

    # -- names --------------------------------------------------------------

    def lease_key(self, symbol: str) -> str:
        """The lease of ``symbol``."""
        return f"{self.namespace}lease:{symbol}"

    def feed_channel(self, symbol: str) -> str:
        """The channel carrying ``symbol``'s ticks."""
        return f"{self.namespace}feed:{symbol}"

    @property
    def members_key(self) -> str:
        """The sorted set of live members."""
        return f"{self.namespace}cluster:members"

    @property
    def released_channel(self) -> str:
        """The channel announcing released leases."""
        return f"{self.namespace}cluster:released"

    @property
    def last_key(self) -> str:
        """The hash of each symbol's last published tick."""
        return f"{self.namespace}cluster:last"

    @property
    def latest_key(self) -> str:
        """The history's hash of each symbol's last stored tick."""
        return f"{self.namespace}latest"

    # -- leases -------------------------------------------------------------

    def renew(self, owned: Iterable[str], symbols: Sequence[str]) -> LeaseView:
        """Heartbeat, renew (or take back) the ``owned`` leases, read every holder."""
        owned = list(owned)
        pipe = self.client.pipeline(transaction=False)
        self._members(keys=[self.members_key], args=[self.owner, self.ttl_ms], client=pipe)
        for symbol in owned:
            self._renew(keys=[self.lease_key(symbol)], args=[self.owner, self.ttl_ms], client=pipe)
        pipe.mget([self.lease_key(symbol) for symbol in symbols])
        members, *renewals, holders = pipe.execute()
        return LeaseView(
            int(members),
            frozenset(symbol for symbol, ok in zip(owned, renewals, strict=True) if ok),
            {
                symbol: holder.decode() if holder is not None else None
                for symbol, holder in zip(symbols, holders, strict=True)
            },
        )

    def acquire(self, symbols: Sequence[str]) -> dict[str, Tick | None]:
        """``SET NX PX`` each lease; the ones won, each with the newest tick Redis knows.

        That tick is the newer (by sequence) of the last one published to
        the cluster and the history's latest; ``None`` when Redis has neither.
        """
        if not symbols:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for symbol in symbols:
            pipe.set(self.lease_key(symbol), self.owner, nx=True, px=self.ttl_ms)
        pipe.hmget(self.last_key, list(symbols))
        pipe.hmget(self.latest_key, list(symbols))
        *won, published, stored = pipe.execute()
        return {
            symbol: _newest(symbol, raws)
            for symbol, ok, *raws in zip(symbols, won, published, stored, strict=True)
            if ok
        }

    def release(self, symbols: Iterable[str], *, leave: bool = False) -> None:
        """Give the leases back (only those still ours) and announce it.

        ``leave`` also removes this instance from the members, so the others
        size their shares without it at once.
        """
        pipe = self.client.pipeline(transaction=False)
        for symbol in symbols:
            self._release(keys=[self.lease_key(symbol)], args=[self.owner], client=pipe)
            pipe.publish(self.released_channel, symbol)
        if leave:
            pipe.zrem(self.members_key, self.owner)
        pipe.execute()

    # -- the feed -----------------------------------------------------------

    def publish(self, batches: Mapping[str, Sequence[Tick]]) -> None:
        """One ``PUBLISH`` per symbol and the last ticks, all in one pipeline."""
        pipe = self.client.pipeline(transaction=False)
        last: dict[str, str] = {}
        for symbol, ticks in batches.items():
            lines = [encode_tick(tick) for tick in ticks]
            pipe.publish(self.feed_channel(symbol), "\n".join(lines))
            last[symbol] = lines[-1]
        pipe.hset(self.last_key, mapping=last)
        pipe.execute()

    def subscribe(self, symbols: Iterable[str]) -> PubSub:
        """A subscription to the feeds of ``symbols`` and to release notices."""
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(self.released_channel, *(self.feed_channel(s) for s in symbols))
        return pubsub

    def receive(self, pubsub: PubSub, timeout: float) -> tuple[list[Tick], list[str]]:
        """Wait up to ``timeout`` for a message, then take every one already there.

        Returns the ticks received (in arrival order) and the symbols whose
        leases were announced as released.
        """
        ticks: list[Tick] = []
        released: list[str] = []
        feed_prefix = self.feed_channel("")
        message = pubsub.get_message(timeout=timeout)
        while message is not None:
            channel = message["channel"].decode()
            data = message["data"].decode()
            if channel == self.released_channel:
                released.append(data)
            elif channel.startswith(feed_prefix):
                symbol = channel[len(feed_prefix) :]
                ticks.extend(decode_tick(symbol, line) for line in data.split("\n"))
            message = pubsub.get_message(timeout=0.0)
        return ticks, released
