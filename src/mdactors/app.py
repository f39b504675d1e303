"""Composition root: build every part from the settings and run them in one nursery."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from mdactors import __version__
from mdactors.adapters.breaker import CircuitBreaker
from mdactors.adapters.history import HistoryStore, MemoryHistory
from mdactors.adapters.metrics import FeedSnapshot, Metrics
from mdactors.adapters.redis_history import RedisHistory, redis_client
from mdactors.api.codec import LIVE_SOURCE
from mdactors.api.context import ApiContext
from mdactors.api.grpc import serve_grpc
from mdactors.api.http import create_app
from mdactors.api.ws import serve_ws
from mdactors.engine.market import Market
from mdactors.engine.recorder import Recorder
from mdactors.engine.subscription import StreamRegistry
from mdactors.engine.supervisor import Child, Lifecycle, Supervisor
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
    background: list[Child] = field(default_factory=list)
    """Supervised tasks started before the engine (e.g. the Redis history writer)."""

    def feed_snapshot(self) -> FeedSnapshot:
        """Copies of the engine's counters, taken on the event loop."""
        market = self.context.market
        streams = self.context.streams
        return FeedSnapshot(
            published={key: actor.latest.seq for key, actor in market.actors.items()},
            last_tick_ns={key: actor.latest.ts_ns for key, actor in market.actors.items()},
            subscribers=dict(streams.subscribers),
            dropped=dict(streams.dropped),
            active_streams=streams.active,
        )

    async def _serve_http(self, task_status: trio.TaskStatus[None]) -> None:
        settings = self.settings
        config = HypercornConfig()
        config.bind = [f"{settings.host}:{settings.http_port}"]
        config.graceful_timeout = settings.shutdown_timeout
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")
        app = create_app(self.context)

        async def started(task_status: trio.TaskStatus[list[str]]) -> None:
            await hypercorn_serve(
                app,
                config,
                shutdown_trigger=self.context.lifecycle.draining.wait,
                task_status=task_status,
            )

        async with trio.open_nursery() as nursery:
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

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start everything, serve, and return after the drain."""
        ctx = self.context
        children = [
            *self.background,
            Child("market", ctx.market.run),
            Child("recorder", ctx.recorder.run),
            Child("grpc", self._serve_grpc, listener=True),
            Child("http", self._serve_http, listener=True),
            Child("ws", partial(serve_ws, ctx, self.ports), listener=True),
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
        await self.supervisor.run(children, task_status=task_status)


def build_service(settings: Settings, *, handle_signals: bool = True) -> Service:
    """Wire the market, recorder, history, metrics and APIs from ``settings``."""
    metrics = Metrics(settings.service_name, settings.instance_name, settings.service_version)
    history: HistoryStore = MemoryHistory(settings.history_size)
    background: list[Child] = []
    start_prices: dict[str, float] = {}
    if settings.redis_url:
        redis_history = _redis_history(settings)
        # Blocking, bounded by REDIS_TIMEOUT: runs before the event loop serves anything.
        start_prices = redis_history.warm_start(settings.symbols)
        metrics.watch_breaker(redis_history.breaker)
        metrics.registry.register(redis_history.collector())
        background.append(Child("history", redis_history.run))
        history = redis_history
    market = Market(
        settings.symbols,
        settings.tick_interval,
        settings.seed,
        models=settings.model_config,
        start_prices=start_prices,
    )
    recorder = Recorder(market, history)
    recorder.backfill()
    streams = StreamRegistry(settings.max_subscribers)
    lifecycle = Lifecycle()
    context = ApiContext(settings, market, recorder, history, streams, lifecycle, metrics)
    supervisor = Supervisor(
        lifecycle,
        streams,
        settings.shutdown_timeout,
        drain_delay=settings.drain_delay,
        handle_signals=handle_signals,
    )
    service = Service(settings, context, supervisor, background=background)
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
