"""The ``marketdata.MarketDataService`` logic, shared by the gRPC and Connect front ends.

Transport-agnostic: requests and responses are the generated protobuf
messages, failures are :class:`RpcError` with a gRPC status :class:`Code`.
:mod:`mdactors.api.grpc.service` (purerpc) and :mod:`mdactors.api.connect.routes` (HTTP)
only decode requests, call :class:`MarketDataRpc`, and move the results and
errors onto their wire.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import trio

from mdactors._proto import marketdata_pb2 as pb
from mdactors._proto.grpc_health.v1 import health_pb2
from mdactors.api.codec import LIVE_SOURCE
from mdactors.api.context import ApiContext
from mdactors.api.rpc.proto_codec import Encoded, timestamp
from mdactors.api.rpc.scenario_stream import scenario_updates
from mdactors.api.rpc.simulation import generate_simulation
from mdactors.api.rpc.status import RPC_ERRORS, Code, RpcError
from mdactors.domain.quotes import quote, round_price
from mdactors.domain.symbols import SymbolError, normalize_symbol, spec_for
from mdactors.domain.tick import Tick
from mdactors.engine.outlet import Outlet
from mdactors.engine.subscription import StreamClosed, Subscription, TooManyStreams
from mdactors.engine.topic import Topic

__all__ = [
    "HEALTH_SERVICES",
    "MAX_INTERVAL_MS",
    "Code",
    "MarketDataRpc",
    "PriceFeed",
    "RpcError",
    "StreamPlan",
]

#: Service names answered by ``grpc.health.v1.Health`` (``""`` is the whole server).
HEALTH_SERVICES = ("", "market-data", "marketdata.MarketDataService")
MAX_INTERVAL_MS = 3_600_000
_LISTED = 10


def _listed(names: list[str]) -> str:
    shown = ", ".join(repr(name[:40]) for name in names[:_LISTED])
    more = len(names) - _LISTED
    return shown + (f" and {more} more" if more > 0 else "")


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """A validated ``StreamPrices`` request.

    ``spellings`` maps each symbol key to the spelling the caller used first
    (echoed in every update); ``interval`` is the conflation interval in
    seconds (0 = every tick).
    """

    spellings: dict[str, str]
    interval: float


class _FeedSubscription(Subscription):
    """A subscription whose end can also be awaited (interval waits end on drain)."""

    def __init__(self, topics: dict[str, Topic[Tick]]) -> None:
        super().__init__(topics)
        self.ended = trio.Event()

    def stop(self) -> None:
        super().stop()
        self.ended.set()


class PriceFeed:
    """What one ``StreamPrices`` call reads: the current state per symbol, then ticks.

    The stream's :attr:`outlet` (:mod:`mdactors.engine.outlet`) owns its
    deliveries: the transport hands it each write (the slow-consumer
    decision, latency). Conflation: :meth:`next_batch` returns every pending
    tick while the client keeps up; while the outlet says it is ``behind``
    (its last write was slow) only the newest tick per symbol
    (:meth:`~mdactors.engine.outlet.Outlet.take_newest`, the skipped ones
    counted as drops, reason ``conflated``). With an interval, at most one
    update per symbol per interval, the newest (requested, so not counted).
    """

    def __init__(
        self,
        ctx: ApiContext,
        subscription: _FeedSubscription,
        plan: StreamPlan,
        client_type: str,
    ) -> None:
        self._streams = ctx.streams
        self._subscription = subscription
        self.plan = plan
        self.client_type = client_type
        self.outlet = Outlet(
            ctx.streams,
            ctx.metrics.publication_latency.labels(client_type),
            client_type,
            subscription,
            ctx.settings.slow_consumer_timeout,
        )
        self._capacity = min(
            (topic.capacity for topic in subscription.topics.values()), default=256
        )
        self._due = 0.0

    @property
    def subscription(self) -> Subscription:
        """The registered subscription the feed reads (for drop accounting)."""
        return self._subscription

    async def next_batch(self) -> list[tuple[str, Tick]]:
        """Wait for news; return ``(spelling, tick)`` pairs, oldest first per symbol.

        The first call returns the current state of every symbol at once.
        Raises :class:`RpcError` (UNAVAILABLE) when the server drains.
        """
        subscription = self._subscription
        interval = self.plan.interval
        if interval and self._due:
            with trio.move_on_at(self._due):
                await subscription.ended.wait()
        try:
            await subscription.wait()
        except StreamClosed as error:
            raise RPC_ERRORS(error) from None
        spellings = self.plan.spellings
        if interval:
            self._due = trio.current_time() + interval
            return [(spellings[key], ticks[-1]) for key, ticks, _ in subscription.take(1)]
        if self.outlet.behind:
            return [(spellings[key], tick) for key, tick in self.outlet.take_newest()]
        out: list[tuple[str, Tick]] = []
        for key, ticks, gap in subscription.take(self._capacity):
            # More than a ring behind: the reader skipped to the oldest tick held.
            self._streams.record_drop(key, self.client_type, "conflated", gap)
            spelling = spellings[key]
            out.extend((spelling, tick) for tick in ticks)
        return out

    def fast_path(self) -> tuple[str, Topic[Tick]] | None:
        """``(key, topic)`` when a fan-out may serve the feed for now: one symbol,
        every tick, not ended (whether it is caught up is the fan-out's check)."""
        subscription = self._subscription
        if self.plan.interval or len(subscription.topics) != 1 or subscription.stopped:
            return None
        [(key, topic)] = subscription.topics.items()
        if topic.closed:
            return None
        return key, topic

    async def wait_ended(self) -> None:
        """Wait until the stream is ended by the server (drain)."""
        await self._subscription.ended.wait()


class MarketDataRpc:
    """``MarketDataService`` over the running engine, for any transport."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings

    # -- GetPrice ---------------------------------------------------------

    def get_price(self, request: pb.GetPriceRequest) -> pb.GetPriceResponse:
        """The live price of a simulated symbol, or a deterministic synthetic one.

        Never fails for a well-formed symbol (the ecosystem's contract); a
        malformed one is INVALID_ARGUMENT. The symbol is echoed as sent.
        """
        raw = request.symbol
        if not raw.strip():
            raise RpcError(Code.INVALID_ARGUMENT, "symbol is required (e.g. BTC/USD, BTC-USD, BTC)")
        try:
            key = normalize_symbol(raw)
        except SymbolError as error:
            raise RPC_ERRORS(error) from None
        market = self.ctx.market
        if key in market.actors:
            tick = market.latest(key)
            return pb.GetPriceResponse(
                symbol=raw,
                price=tick.price,
                timestamp=timestamp(tick.ts_ns),
                source=LIVE_SOURCE,
                sequence=tick.seq,
                bid=tick.bid,
                ask=tick.ask,
                key=key,
                live=True,
            )
        spec = spec_for(key)
        price = round_price(spec, market.indicative(key) or spec.seed_price)
        bid, ask = quote(spec, price, 0.0)
        return pb.GetPriceResponse(
            symbol=raw,
            price=price,
            timestamp=timestamp(time.time_ns()),
            source=LIVE_SOURCE,
            bid=bid,
            ask=ask,
            key=key,
            live=False,
        )

    # -- StreamPrices -----------------------------------------------------

    def plan_stream(self, request: pb.StreamPricesRequest) -> StreamPlan:
        """Validate a ``StreamPrices`` request; :class:`RpcError` names what is wrong."""
        settings = self.settings
        symbols = list(request.symbols)
        if not symbols:
            known = ", ".join(self.ctx.market.symbols)
            raise RpcError(
                Code.INVALID_ARGUMENT, f"symbols must name at least one symbol; known: {known}"
            )
        if len(symbols) > settings.max_stream_symbols:
            raise RpcError(
                Code.RESOURCE_EXHAUSTED,
                f"at most {settings.max_stream_symbols} symbols per stream, got {len(symbols)}",
            )
        interval_ms = request.update_interval_ms
        if interval_ms < 0 or interval_ms > MAX_INTERVAL_MS:
            raise RpcError(
                Code.INVALID_ARGUMENT,
                f"update_interval_ms must be within 0..{MAX_INTERVAL_MS} "
                f"(0 = every tick), got {interval_ms}",
            )
        market = self.ctx.market
        spellings: dict[str, str] = {}
        malformed: list[str] = []
        unknown: list[str] = []
        for raw in symbols:
            try:
                key = normalize_symbol(raw)
            except SymbolError:
                malformed.append(raw)
                continue
            if key not in market.actors:
                unknown.append(raw)
                continue
            spellings.setdefault(key, raw)
        if malformed:
            raise RpcError(
                Code.INVALID_ARGUMENT,
                f"malformed symbols {_listed(malformed)}: expected e.g. BTC/USD, BTC-USD or BTC",
            )
        if unknown:
            raise RpcError(
                Code.INVALID_ARGUMENT,
                f"unknown symbols {_listed(unknown)}; streamed symbols are: "
                f"{', '.join(market.symbols)}",
            )
        interval = max(interval_ms / 1000.0, settings.stream_interval_floor)
        return StreamPlan(spellings, interval)

    @contextmanager
    def price_feed(self, request: pb.StreamPricesRequest, client_type: str) -> Iterator[PriceFeed]:
        """Validate ``request`` and hold a registered stream for the ``with`` block.

        Raises :class:`RpcError`: INVALID_ARGUMENT / RESOURCE_EXHAUSTED for the
        request, RESOURCE_EXHAUSTED at the stream limit, UNAVAILABLE while draining.
        """
        plan = self.plan_stream(request)
        market = self.ctx.market
        subscription = _FeedSubscription({key: market.actor(key).topic for key in plan.spellings})
        with ExitStack() as stack:
            try:
                stack.enter_context(self.ctx.streams.open(client_type, subscription))
            except (TooManyStreams, StreamClosed) as error:
                raise RPC_ERRORS(error) from None
            yield PriceFeed(self.ctx, subscription, plan, client_type)

    # -- GenerateSimulation -----------------------------------------------

    async def generate_simulation(self, request: pb.SimulationRequest) -> Encoded:
        """Historical and simulated bars with computed similarity metrics, encoded.

        The bytes of a ``SimulationResponse`` (built vectorised in a worker
        thread, see :mod:`mdactors.api.rpc.simulation`); INVALID_ARGUMENT for a
        malformed request or one beyond the limits.
        """
        return await generate_simulation(self.ctx, request)

    # -- StreamScenario ---------------------------------------------------

    def scenario_updates(self, request: pb.ScenarioRequest) -> AsyncIterator[pb.PriceUpdate]:
        """The price updates of a scenario on the symbol's own model, at their due times.

        INVALID_ARGUMENT (raised on the first iteration) for a bad request;
        UNAVAILABLE when the server drains. See :mod:`mdactors.api.rpc.scenario_stream`.
        """
        return scenario_updates(self.ctx, request)

    # -- Health -----------------------------------------------------------

    def health_check(self, request: pb.HealthCheckRequest) -> pb.HealthCheckResponse:
        """The service's own health RPC, with details for dashboards."""
        ctx = self.ctx
        settings = self.settings
        details = {
            "service_name": settings.service_name,
            "service_version": settings.service_version,
            "instance": settings.instance_name,
            "environment": settings.environment,
            "phase": ctx.lifecycle.phase.value,
            "active_streams": str(ctx.streams.active),
            "max_streams": str(ctx.streams.max_streams),
            "symbols": ",".join(ctx.market.symbols),
        }
        now = timestamp(time.time_ns())
        known = request.service in (*HEALTH_SERVICES, settings.service_name)
        if not known:
            return pb.HealthCheckResponse(
                status=pb.SERVICE_UNKNOWN,
                message=f"unknown service {request.service[:80]!r}",
                timestamp=now,
                details=details,
            )
        serving = ctx.lifecycle.serving
        return pb.HealthCheckResponse(
            status=pb.SERVING if serving else pb.NOT_SERVING,
            message="serving" if serving else f"not serving ({ctx.lifecycle.phase.value})",
            timestamp=now,
            details=details,
        )

    def standard_health(self, service: str) -> int | None:
        """``grpc.health.v1`` status of ``service``; ``None`` if the name is unknown."""
        if service not in HEALTH_SERVICES:
            return None
        response = health_pb2.HealthCheckResponse
        return response.SERVING if self.ctx.lifecycle.serving else response.NOT_SERVING

    def standard_check(
        self, request: health_pb2.HealthCheckRequest
    ) -> health_pb2.HealthCheckResponse:
        """``grpc.health.v1.Health/Check``: NOT_FOUND for a service name we do not serve."""
        status = self.standard_health(request.service)
        if status is None:
            raise RpcError(Code.NOT_FOUND, f"unknown service {request.service[:80]!r}")
        return health_pb2.HealthCheckResponse(status=status)
