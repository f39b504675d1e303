"""Composition root: build every part from the settings and run them in one nursery."""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from functools import partial

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.trio import serve as hypercorn_serve
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from mdactors import __version__
from mdactors.adapters.breaker import BreakerState, CircuitBreaker
from mdactors.adapters.config_service import ConfigClient, SimulationOverrides
from mdactors.adapters.discovery import (
    InstanceRecord,
    Registrar,
    advertised_address,
    ecosystem_status,
)
from mdactors.adapters.history import HistoryStore, MemoryHistory
from mdactors.adapters.metrics import FeedSnapshot, Metrics
from mdactors.adapters.postgres_history import PersistedHistory
from mdactors.adapters.postgres_store import PostgresStore, postgres_pool
from mdactors.adapters.redis_cluster import RedisCluster
from mdactors.adapters.redis_history import RedisHistory, redis_client
from mdactors.api.binance.streams import BinanceStreams
from mdactors.api.codec import LIVE_SOURCE
from mdactors.api.connect.grpc_http import GrpcTrailers
from mdactors.api.context import ApiContext
from mdactors.api.grpc.service import serve_grpc
from mdactors.api.http.app import create_app
from mdactors.api.http.body_drain import DrainBody
from mdactors.api.http.h2_trailers import fix_h2_trailers
from mdactors.api.http.readiness import monitor_dependencies
from mdactors.api.http.write_guard import WriteGuard
from mdactors.api.ws.server import serve_ws
from mdactors.domain.candles import Candle
from mdactors.domain.guards import PriceBreaker
from mdactors.engine.cluster import ClusterCoordinator
from mdactors.engine.derived_actor import PerpetualActor
from mdactors.engine.mark_history import MarkHistory
from mdactors.engine.market import Market
from mdactors.engine.market_feed import FeedPublisher, FeedRelay
from mdactors.engine.market_view import MarketView
from mdactors.engine.persistence import feed_postgres
from mdactors.engine.recorder import Recorder
from mdactors.engine.replay import ReplayDriver, ReplayOptions
from mdactors.engine.scenarios import ScenarioEngine
from mdactors.engine.subscription import StreamRegistry
from mdactors.engine.supervisor import Child, Lifecycle, Supervisor
from mdactors.net import shared_listen_socket
from mdactors.settings import Settings

__all__ = ["Service", "build_service"]

log = logging.getLogger("mdactors")


@dataclass
class Service:
    """A fully wired service; :meth:`run` serves until drained."""

    settings: Settings
    context: ApiContext
    supervisor: Supervisor
    ports: dict[str, int] = field(default_factory=dict)
    instance_id: str = ""
    """Discovery id: the instance name, plus a random suffix when it was not set explicitly."""
    background: list[Child] = field(default_factory=list)
    """Supervised tasks started before the engine (e.g. the Redis history writer)."""
    cluster: ClusterCoordinator | None = None
    """With ``CLUSTER_MODE=redis``: runs the actors this instance owns instead of the market."""
    replay: ReplayDriver | None = None
    """With ``mdactors replay``: plays the recorded file through the actors."""
    feed_relay: FeedRelay | None = None
    """With ``FEED_SUBSCRIBE``: serves the market process's ticks instead of running actors."""

    def feed_snapshot(self) -> FeedSnapshot:
        """Copies of the engine's counters, taken on the event loop."""
        market = self.context.market
        streams = self.context.streams
        halted = market.halted()
        return FeedSnapshot(
            published={key: actor.latest.seq for key, actor in market.actors.items()},
            last_tick_ns={key: actor.latest.ts_ns for key, actor in market.actors.items()},
            subscribers=dict(streams.subscribers),
            dropped=dict(streams.dropped),
            active_streams=streams.active,
            scenarios=self.context.scenarios.counts(),
            halted={key: key in halted for key in market.actors},
            streams=dict(streams.by_type),
        )

    async def _serve_http(self, task_status: trio.TaskStatus[None]) -> None:
        settings = self.settings
        config = HypercornConfig()
        config.bind = [f"{settings.host}:{settings.http_port}"]
        config.graceful_timeout = settings.shutdown_timeout
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")
        # hypercorn has no write timeout: the guard resets the connection of a
        # stream whose client stopped reading (see mdactors.api.http.write_guard).
        # An answer sent before the request body was read (a 401 on a large POST)
        # must not leave that body in the way of the connection's next request.
        # gRPC on this port: the status of an application/grpc answer goes in
        # HTTP/2 trailers (see mdactors.api.connect.grpc_http), which hypercorn
        # 0.17.3 sends out of order without the fix.
        fix_h2_trailers()
        app = WriteGuard(
            DrainBody(GrpcTrailers(create_app(self.context))), settings.slow_consumer_timeout
        )

        async def serve(task_status: trio.TaskStatus[list[str]]) -> None:
            if not settings.reuse_port:
                await hypercorn_serve(
                    app,
                    config,
                    shutdown_trigger=self.context.lifecycle.draining.wait,
                    task_status=task_status,
                )
                return
            # serve --workers: a socket shared with the other workers (SO_REUSEPORT).
            shared = shared_listen_socket(settings.host, settings.http_port, config.backlog)
            await worker_serve(
                wrap_app(app, config.wsgi_max_body_size, None),
                config,
                sockets=Sockets([], [shared], []),
                shutdown_trigger=self.context.lifecycle.draining.wait,
                task_status=task_status,
            )

        async def started(task_status: trio.TaskStatus[list[str]]) -> None:
            await serve(task_status=task_status)
            nursery.cancel_scope.cancel()  # served: stop the guard's watchdog

        async with trio.open_nursery() as nursery:
            nursery.start_soon(app.watch)
            binds = await nursery.start(started)
            self.ports["http"] = int(binds[0].rsplit(":", 1)[1])
            log.info("listening", extra={"event": "listening", "transport": "http", "binds": binds})
            task_status.started()

    async def _serve_grpc(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_grpc, self.context)
            self.ports["grpc"] = port
            binds = [f"{self.settings.host}:{port}"]
            log.info("listening", extra={"event": "listening", "transport": "grpc", "binds": binds})
            task_status.started()

    def _discovery(self) -> list[Child]:
        """The discovery child (first started, so it deregisters last), if configured."""
        settings = self.settings
        if not (settings.redis_url and settings.discovery_enabled):
            return []
        return [Child("discovery", self._run_discovery, restart=True)]

    def health_for_discovery(self) -> tuple[str, str]:
        """``(health, status)`` of this instance as discovery publishes it.

        ``healthy``/``active`` while serving, as the Go client's filter wants;
        ``degraded`` while the history store is down (prices are still live),
        ``unhealthy`` once a supervised task is down for good; the status
        follows the lifecycle (``starting``, ``active``, ``draining``, ``inactive``).
        """
        ctx = self.context
        status = ecosystem_status(ctx.lifecycle.phase.value)
        if not ctx.lifecycle.healthy:
            return "unhealthy", status
        degraded = ctx.history.describe().get("status") == "degraded"
        return ("degraded" if degraded else "healthy"), status

    async def _run_discovery(self, task_status: trio.TaskStatus[None]) -> None:
        settings = self.settings
        task_status.started()
        # The record names the bound ports: register once every listener is up.
        await self.context.lifecycle.serving_started.wait()
        record = InstanceRecord(
            service_name=settings.service_name,
            service_version=settings.service_version,
            instance_id=self.instance_id,
            address=advertised_address(settings.host, settings.advertise_address),
            http_port=self.ports.get("http", settings.http_port),
            grpc_port=self.ports.get("grpc", settings.grpc_port),
            ws_port=self.ports.get("ws", settings.ws_port),
            environment=settings.environment,
            registered_at=time.time(),
            tags=["market-data", "simulator", "grpc", "http", "websocket", settings.environment],
        )
        registrar = Registrar(
            redis_client(settings.redis_url, settings.redis_timeout),
            record,
            self.health_for_discovery,
            heartbeat=settings.heartbeat_interval,
            ttl=settings.service_ttl,
            schemes=settings.discovery_schemes,
            namespace=settings.discovery_namespace,
        )
        await registrar.run(self.context.lifecycle.drain_requested)

    def _config_refresh(self) -> list[Child]:
        """The configuration-service refresher, if ``CONFIG_SERVICE_URL`` is set."""
        settings = self.settings
        if not settings.config_service_url:
            return []

        breaker = CircuitBreaker("config_service")
        self.context.metrics.watch_breaker(breaker)
        self.context.checks["config_service"] = lambda: {
            "status": "ok" if breaker.state is BreakerState.CLOSED else "degraded",
            "breaker": breaker.state.value,
        }

        async def run(task_status: trio.TaskStatus[None]) -> None:
            async with httpx.AsyncClient(timeout=settings.request_timeout) as http:
                client = ConfigClient(
                    settings.config_service_url, http, breaker, default_ttl=settings.cache_ttl
                )
                await client.run(
                    self.context.market.symbols, self.apply_overrides, task_status=task_status
                )

        return [Child("config", run, restart=True)]

    def apply_overrides(self, overrides: SimulationOverrides) -> None:
        """Apply configuration-service parameters to the running actors (next tick on)."""
        for key, values in overrides.symbols.items():
            actor = self.context.market.actor(key)
            actor.interval = values.tick_interval or self.settings.tick_interval
            actor.volatility_factor = values.volatility_factor
            actor.spread_factor = values.spread_factor

    def _engine(self) -> Child:
        """The child running the actors: the cluster coordinator, or the whole market."""
        if self.replay is not None:
            return Child("replay", self.replay.run)
        if self.cluster is not None:
            return Child("cluster", self.cluster.run)
        if self.feed_relay is not None:
            return Child("feed", self.feed_relay.run)
        return Child(
            "market", partial(self.context.market.run, on_give_up=self.context.lifecycle.fail)
        )

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start everything, serve, and return after the drain."""
        ctx = self.context
        children = [
            *self._discovery(),
            *self.background,
            self._engine(),
            Child("recorder", ctx.recorder.run),
            *([Child("marks", ctx.marks.run)] if ctx.marks is not None else []),
            Child("loop-lag", ctx.metrics.loop_lag.run, restart=True),
            *self._config_refresh(),
            Child(
                "health",
                partial(monitor_dependencies, ctx, self.settings.health_check_interval),
                restart=True,
            ),
            Child("grpc", self._serve_grpc, listener=True),
            Child("http", self._serve_http, listener=True),
            Child("ws", partial(serve_ws, ctx, self.ports, (BinanceStreams,)), listener=True),
        ]
        log.info(
            "starting",
            extra={
                "event": "starting",
                "version": __version__,
                "symbols": ",".join(ctx.market.symbols),
                "seed": ctx.market.seed,
            },
        )
        for notice in self.settings.notices:
            log.warning(notice, extra={"event": "configuration_notice"})
        await self.supervisor.run(children, task_status=task_status)


def build_service(
    settings: Settings, *, handle_signals: bool = True, replay: ReplayOptions | None = None
) -> Service:
    """Wire the market, recorder, history, metrics and APIs from ``settings``.

    With ``replay`` the market's symbols are the recorded file's, and its
    actors publish the file's points instead of running their models.
    """
    if replay is not None:
        settings = settings.replace(symbols=tuple(replay.plan.symbols))
    metrics = Metrics(settings.service_name, settings.instance_name, settings.service_version)
    history: HistoryStore = MemoryHistory(settings.history_size)
    background: list[Child] = []
    start_prices: dict[str, float] = {}
    stored_minutes: dict[str, list[Candle]] = {}
    if settings.redis_url:
        redis_history = _redis_history(settings)
        # Blocking, bounded by REDIS_TIMEOUT: runs before the event loop serves anything.
        start_prices = redis_history.warm_start(settings.symbols)
        # What an earlier run stored, for the backfill to continue rather than redraw.
        now_ms = time.time_ns() // 1_000_000
        since_ms = now_ms - now_ms % 86_400_000 - settings.backfill_days * 86_400_000
        stored_minutes = redis_history.stored_minutes(settings.symbols, since_ms)
        metrics.watch_breaker(redis_history.breaker)
        metrics.registry.register(redis_history.collector())
        background.append(Child("history", redis_history.run))
        history = redis_history
    if replay is not None:
        start_prices, stored_minutes = replay.start_prices(), {}
    market = Market(
        settings.symbols,
        settings.tick_interval,
        settings.seed,
        models=settings.model_config,
        start_prices=start_prices,
        derive=replay is None,  # a recording holds every symbol's own prices
    )
    publisher = None
    if settings.feed_publish and replay is None:
        publisher = FeedPublisher(market, settings.feed_publish)
        background.append(Child("feed", publisher.run, restart=True))
    if settings.price_breaker_threshold:
        for actor in market.actors.values():
            actor.breaker = PriceBreaker(
                settings.price_breaker_threshold / 100.0,
                settings.price_breaker_window,
                settings.price_breaker_timeout,
            )
    postgres = None
    if settings.postgres_url:
        postgres = _postgres(settings, market, "replay" if replay is not None else market.source)
        metrics.watch_breaker(postgres.breaker)
        metrics.registry.register(postgres.collector())
        background.append(Child("postgres", postgres.run))
        history = PersistedHistory(history, postgres, settings.price_feed_sample_interval)
    recorder = Recorder(market, history)
    if isinstance(history, PersistedHistory):
        history.volume_24h = lambda key: recorder.stats_24h(key).volume
    recorder.backfill(settings.backfill_days, stored=stored_minutes)
    streams = StreamRegistry(settings.max_subscribers)
    lifecycle = Lifecycle()
    context = ApiContext(
        settings,
        market,
        recorder,
        history,
        streams,
        lifecycle,
        metrics,
        ScenarioEngine(market),
        MarketView(market, recorder, history),
        postgres=postgres,
        marks=MarkHistory(
            {k: a for k, a in market.actors.items() if isinstance(a, PerpetualActor)},
            wall_clock=market.wall_clock,
        ),
    )
    if postgres is not None:
        context.checks["postgres"] = postgres.describe
        background.append(
            Child(
                "postgres-feed",
                partial(feed_postgres, postgres, market, recorder, settings.snapshot_interval),
                restart=True,
            )
        )
    supervisor = Supervisor(
        lifecycle,
        streams,
        settings.shutdown_timeout,
        drain_delay=settings.drain_delay,
        handle_signals=handle_signals,
    )
    service = Service(
        settings,
        context,
        supervisor,
        ports=context.ports,
        background=background,
        instance_id=_instance_id(settings),
    )
    if replay is not None:
        service.replay = ReplayDriver(market, replay)
        market.source = "replay"
    elif settings.cluster_mode == "redis":
        service.cluster = _cluster(settings, context, service.instance_id)
    if publisher is not None:
        context.checks["feed"] = publisher.describe
    elif settings.feed_subscribe and replay is None:
        service.feed_relay = FeedRelay(market, settings.feed_subscribe)
        market.source = "market-process feed"
        context.checks["feed"] = service.feed_relay.describe
        context.scenarios.elsewhere = (
            "this worker serves the ticks of the market process (worker 1), where scenarios "
            "run: send it there (GET /api/v1/ready names the instance that answers)"
        )
    metrics.watch_feed(service.feed_snapshot, LIVE_SOURCE)
    return service


def _redis_history(settings: Settings) -> RedisHistory:
    """The Redis history store of ``settings`` (REDIS_URL set), not yet connected."""
    return RedisHistory(
        redis_client(settings.redis_url, settings.redis_timeout),
        CircuitBreaker("redis", settings.redis_breaker_threshold, settings.redis_breaker_timeout),
        namespace=settings.cache_namespace,
        tick_capacity=settings.history_size,
        backlog=settings.history_backlog,
        batch_size=settings.history_batch_size,
        flush_interval=settings.history_flush_interval,
    )


def _postgres(settings: Settings, market: Market, source: str) -> PostgresStore:
    """The PostgreSQL store of ``settings`` (POSTGRES_URL set) for ``market``, not connected."""
    return PostgresStore(
        postgres_pool(
            settings.postgres_url, settings.postgres_pool_size, settings.postgres_timeout
        ),
        CircuitBreaker("postgres", 5, settings.postgres_breaker_timeout),
        schema=settings.postgres_schema,
        backlog=settings.postgres_backlog,
        source=source,
        simulated=market.symbols,
    )


def _cluster(settings: Settings, context: ApiContext, instance_id: str) -> ClusterCoordinator:
    """The cluster coordinator of ``settings`` (CLUSTER_MODE=redis), with metrics and readiness."""
    ttl = settings.cluster_lease_ttl
    guard = ttl / 4
    # Calls time out before the lease could: a hung call must not outlive the guard.
    client = redis_client(settings.redis_url, min(settings.redis_timeout, guard))
    owner = f"{instance_id}/{secrets.token_hex(3)}"
    coordinator = ClusterCoordinator(
        context.market,
        RedisCluster(client, owner, ttl, settings.cache_namespace),
        ttl=ttl,
        renew_interval=settings.cluster_renew_interval,
        guard=guard,
        flush_interval=settings.history_flush_interval,
        draining=context.lifecycle.drain_requested,
        on_give_up=context.lifecycle.fail,
    )
    context.metrics.registry.register(coordinator.stats.collector())
    context.checks["cluster"] = coordinator.stats.describe
    return coordinator


def _instance_id(settings: Settings) -> str:
    """A unique discovery id; an explicit SERVICE_INSTANCE_NAME is used as is."""
    if settings.instance_name != settings.service_name:
        return settings.instance_name
    return f"{settings.instance_name}-{secrets.token_hex(4)}"
