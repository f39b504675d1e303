"""Scale-out over Redis: each symbol simulated by one instance at a time, relayed to all.

With ``CLUSTER_MODE=redis`` the :class:`ClusterCoordinator` runs the actors
instead of :meth:`Market.run <mdactors.engine.market.Market.run>`. Each
round (every ``renew_interval``, or at once when a lease is announced
released) it renews the leases it holds and claims free ones up to a fair
share (``ceil(symbols / members)``; a symbol left free for two rounds is
claimed whatever the share, so none stays unowned). An owned symbol's actor
runs here and its ticks are published to Redis in batches by a writer task;
every other symbol's ticks arrive from Redis and are published into the local
actor's Topic, so every transport serves the same ticks (same sequence, same
price) on every instance.

Safety: ticks go to Redis only while the lease is known to be ours with time
to spare (``guard`` before the expiry measured from when the renewal was
*sent*), so the shared feed never carries two owners. A renewal refused
(someone else holds the lease) stops the actor at once. A renewal that cannot
reach Redis does not: the instance keeps simulating what it owns for its own
clients (nobody can take a lease over while Redis is away), pauses the shared
publication, and on Redis' return renews, or takes back, its leases before
claiming anything new (others wait one lease TTL after an outage so previous
owners come first).

On lease gain the actor resumes from the newest tick known (the last one
relayed here or the history's latest hash), continuing the sequence. At drain
the actors stop, their last ticks are flushed, and the leases are released
and announced, so another instance takes over at once.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio

from mdactors.adapters.redis_cluster import ClusterStats, LeaseView, RedisCluster
from mdactors.adapters.redis_history import FAILURES
from mdactors.domain.tick import Tick
from mdactors.engine.market import Market
from mdactors.engine.relay import relay_ticks
from mdactors.engine.restarts import RestartBudget, keep_running
from mdactors.engine.subscription import Subscription

__all__ = ["ClusterCoordinator", "plan_claims"]

log = logging.getLogger("mdactors.cluster")

_RECEIVE_WAIT_S = 0.1
_HANDOVER_S = 3.0


def _rank(owner: str, symbol: str) -> int:
    """A per-instance order of the symbols, so instances prefer different ones."""
    return zlib.crc32(f"{owner}|{symbol}".encode())


def plan_claims(
    symbols: Sequence[str],
    view: LeaseView,
    owner: str,
    free_before: frozenset[str],
) -> list[str]:
    """The free symbols to claim: up to a fair share, plus any free for two rounds."""
    share = math.ceil(len(symbols) / max(1, view.members))
    free = sorted((s for s in symbols if view.owners[s] is None), key=lambda s: _rank(owner, s))
    wanted = max(0, share - len(view.renewed))
    return free[:wanted] + [s for s in free[wanted:] if s in free_before]


@dataclass
class _Running:
    scope: trio.CancelScope
    done: trio.Event


class ClusterCoordinator:
    """Runs the actors this instance holds a lease for; relays the others from Redis.

    ``ttl`` is the lease TTL, renewed every ``renew_interval``; ``guard`` is
    how long before the lease could expire the shared publication stops
    without a successful renewal. ``draining`` is the service's drain event:
    only a drain hands the leases back (a crash leaves them to expire).
    """

    def __init__(
        self,
        market: Market,
        redis: RedisCluster,
        *,
        ttl: float,
        renew_interval: float,
        guard: float,
        flush_interval: float,
        draining: trio.Event,
        on_give_up: Callable[[str, BaseException], None],
    ) -> None:
        self.market = market
        self.redis = redis
        self.ttl = ttl
        self.renew_interval = renew_interval
        self.guard = guard
        self.flush_interval = flush_interval
        self._draining = draining
        self._on_give_up = on_give_up
        symbols = market.symbols
        self.stats = ClusterStats(
            owned=dict.fromkeys(symbols, False),
            relayed=dict.fromkeys(symbols, 0),
            relay_lag=dict.fromkeys(symbols, 0.0),
        )
        self._running: dict[str, _Running] = {}
        self._safe_until: dict[str, float] = {}
        self._publish_after: dict[str, int] = {}
        self._feed = Subscription(
            {key: actor.topic for key, actor in market.actors.items()}, from_latest=False
        )
        self._free_before: frozenset[str] = frozenset()
        self._claim_after = -math.inf
        self._known = False
        self._wake = trio.Event()
        self._publish_lock = trio.Lock()
        self._nursery: trio.Nursery | None = None

    @property
    def running(self) -> frozenset[str]:
        """Symbols simulated here right now."""
        return frozenset(self._running)

    # -- the lease round ------------------------------------------------------

    def _exchange(self, claims_allowed: bool) -> tuple[LeaseView, dict[str, Tick | None]]:
        """Renew, read every holder, claim (runs in a worker thread)."""
        symbols = self.market.symbols
        view = self.redis.renew(self._running, symbols)
        if not claims_allowed:
            return view, {}
        claims = plan_claims(symbols, view, self.redis.owner, self._free_before)
        return view, self.redis.acquire(claims)

    async def _round(self) -> None:
        sent = trio.current_time()
        stats = self.stats
        claims_allowed = (stats.up or not self._known) and sent >= self._claim_after
        try:
            view, won = await trio.to_thread.run_sync(self._exchange, claims_allowed)
        except FAILURES as error:
            self._redis_down(error)
            return
        if not stats.up:
            if self._known:
                self._claim_after = sent + self.ttl
            log.info(
                "cluster redis up",
                extra={"event": "cluster_up", "members": view.members, "owner": self.redis.owner},
            )
        stats.up = self._known = True
        stats.members = view.members
        for key in list(self._running):
            if key in view.renewed:
                self._confirm(key, sent)
            else:
                await self._lose(key)
        for key, stored in won.items():
            self._start(key, stored, sent)
        free = frozenset(s for s, holder in view.owners.items() if holder is None) - won.keys()
        self._free_before = free
        share = math.ceil(len(self.market.symbols) / max(1, view.members))
        if not free and len(self._running) > share:
            # Hand one symbol over per round: a newcomer takes it at once (release notice).
            try:
                await self._hand_over(
                    [max(self._running, key=lambda s: _rank(self.redis.owner, s))]
                )
            except FAILURES as error:
                self._redis_down(error)  # the lease expires by its TTL instead

    def _redis_down(self, error: BaseException) -> None:
        stats = self.stats
        if stats.up or not self._known:
            log.warning(
                "cluster redis unreachable: simulating owned symbols locally, relays stale",
                extra={"event": "cluster_degraded", "error": str(error)[:200]},
            )
        stats.up = False
        self._known = True
        now = trio.current_time()
        for key in self._running:
            if stats.owned[key] and now >= self._safe_until[key]:
                stats.owned[key] = False

    def _confirm(self, key: str, sent: float) -> None:
        self._safe_until[key] = sent + self.ttl - self.guard
        self.stats.owned[key] = True

    def _changed(self, key: str, change: str, message: str) -> None:
        self.stats.lease_changes[change] += 1
        log.info(message, extra={"event": f"lease_{change}", "symbol": key})

    def _start(self, key: str, stored: Tick | None, sent: float) -> None:
        """Resume ``key``'s actor from the newest tick known and run it here."""
        assert self._nursery is not None
        actor = self.market.actor(key)
        base = actor.latest
        if stored is not None and stored.seq > base.seq:
            base = stored
            actor.publish(stored)
        actor.resume_from(base)
        self._publish_after[key] = base.seq
        self._confirm(key, sent)
        running = self._running[key] = _Running(trio.CancelScope(), trio.Event())
        self._nursery.start_soon(self._run_actor, key, running)
        self._changed(key, "acquired", "lease acquired: simulating here")

    async def _run_actor(self, key: str, running: _Running) -> None:
        try:
            with running.scope:
                await keep_running(key, self.market.actor(key).run, RestartBudget(), self._give_up)
        finally:
            running.done.set()

    def _give_up(self, name: str, error: BaseException) -> None:
        self._on_give_up(f"actor {name}", error)

    async def _stop(self, key: str) -> None:
        """Stop ``key``'s actor here and wait until it has (a no-op once stopped)."""
        running = self._running.pop(key, None)
        if running is not None:
            running.scope.cancel()
            await running.done.wait()

    async def _lose(self, key: str) -> None:
        self.stats.owned[key] = False  # before the stop: no further tick goes out
        await self._stop(key)
        self._changed(key, "lost", "lease lost to another instance: relaying")

    async def _hand_over(self, keys: list[str], *, leave: bool = False) -> None:
        """Stop ``keys``' actors, flush their last ticks, release and announce the leases."""
        for key in keys:
            await self._stop(key)
        async with self._publish_lock:
            await self._publish_pending(keys)
        for key in keys:
            self.stats.owned[key] = False
        await trio.to_thread.run_sync(lambda: self.redis.release(keys, leave=leave))
        for key in keys:
            self._changed(key, "released", "lease released")

    async def _lease_loop(self, task_status: trio.TaskStatus[None]) -> None:
        await self._round()
        task_status.started()
        while True:
            with trio.move_on_after(self.renew_interval):
                await self._wake.wait()
            self._wake = trio.Event()
            await self._round()

    # -- publishing owned ticks -------------------------------------------------

    async def _publish_pending(self, keys: Sequence[str] | None = None) -> None:
        """Send every pending tick of owned symbols (``keys``, default all) to Redis."""
        now = trio.current_time()
        owned = self.stats.owned
        batches: dict[str, list[Tick]] = {}
        readers = self._feed.readers
        for key in keys if keys is not None else readers:
            ticks, _ = readers[key].take(readers[key].lag)
            after = self._publish_after.get(key, 0)
            fresh = [tick for tick in ticks if tick.seq > after]
            if not fresh:
                continue
            if owned[key] and now < self._safe_until[key]:
                batches[key] = fresh
                self._publish_after[key] = fresh[-1].seq
            elif key in self._running:
                self.stats.unpublished += len(fresh)
        if not batches:
            return
        count = sum(map(len, batches.values()))
        try:
            await trio.to_thread.run_sync(self.redis.publish, batches)
        except FAILURES:
            self.stats.unpublished += count  # the lease round reports the outage
            return
        self.stats.published += count

    async def _publisher(self) -> None:
        """Send owned ticks to Redis as they come, then pause ``flush_interval`` (batching)."""
        with self._feed:
            while True:
                await self._feed.wait()
                async with self._publish_lock:
                    await self._publish_pending()
                await trio.sleep(self.flush_interval)

    # -- relaying the others' ticks ---------------------------------------------

    def relay(self, ticks: list[Tick]) -> None:
        """Publish ticks received from their owners into the local topics."""
        stats = self.stats
        relay_ticks(self.market, ticks, stats.relayed, stats.relay_lag, skip=self._running)

    async def _relay_loop(self) -> None:
        symbols = self.market.symbols
        pubsub = None
        try:
            while True:
                try:
                    if pubsub is None:
                        pubsub = await trio.to_thread.run_sync(self.redis.subscribe, symbols)
                    ticks, released = await trio.to_thread.run_sync(
                        self.redis.receive, pubsub, _RECEIVE_WAIT_S
                    )
                except FAILURES:
                    # The lease round logs the outage; resubscribe once Redis answers.
                    if pubsub is not None:
                        pubsub.close()
                        pubsub = None
                    await trio.sleep(self.renew_interval)
                    continue
                self.relay(ticks)
                if released:
                    self._wake.set()
        finally:
            if pubsub is not None:
                pubsub.close()

    # -- the whole ---------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Take part in the cluster until cancelled; a drain hands the leases over."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._relay_loop)
                nursery.start_soon(self._publisher)
                await nursery.start(self._lease_loop)
                task_status.started()
        finally:
            if self._draining.is_set():
                with trio.CancelScope(shield=True), trio.move_on_after(_HANDOVER_S):
                    await self._release_all()

    async def _release_all(self) -> None:
        keys = list(self._running)
        try:
            await self._hand_over(keys, leave=True)
        except FAILURES as error:
            log.warning(
                "lease release failed: the leases expire by their TTL",
                extra={"event": "lease_release_failed", "error": str(error)[:200]},
            )
