"""State inspection under ``/debug``: scenarios, price buffers, correlations, subscribers,
data sources."""

from __future__ import annotations

import time
from typing import Any, Literal

import trio
from pydantic import BaseModel, Field
from quart import Response
from quart_schema import validate_querystring

from mdactors.api.admin.guard import admin_blueprint, scenario_view
from mdactors.api.codec import rfc3339
from mdactors.api.http.web import context, json_response
from mdactors.domain.overlay import Scenario
from mdactors.domain.scenarios import Disruption, ScenarioKind
from mdactors.domain.stats import correlation_matrix
from mdactors.domain.tick import Tick
from mdactors.engine.derived_actor import DerivedActor
from mdactors.engine.symbol_actor import SymbolActor
from mdactors.engine.topic import Reader

__all__ = ["blueprint"]

blueprint = admin_blueprint("debug", "/debug")


class BufferQuery(BaseModel):
    """Query of ``/debug/price-buffers``."""

    limit: int = Field(20, ge=0, le=4096, description="Recent ticks per symbol.")


class CorrelationSource(BaseModel):
    """Query of ``/debug/correlation-matrix``."""

    source: Literal["ticks", "minutes"] = Field(
        "ticks", description="Tick returns from the live buffers, or 1m candle returns (4 h)."
    )


def _recent(actor: SymbolActor, limit: int) -> list[Tick]:
    """The newest ``limit`` ticks still in the actor's ring, oldest first."""
    topic = actor.topic
    ticks, _ = Reader(topic, max(0, topic.published - limit)).take(limit)
    return ticks


@blueprint.get("/scenario-timeline")
async def scenario_timeline() -> Response:
    """Active and recently finished scenarios with phase, progress and phase times."""
    engine = context().scenarios
    now = trio.current_time()
    active = [scenario_view(s, now) for s in engine.active()]
    finished = [scenario_view(s, now) for s in reversed(engine.finished)]
    return json_response(
        {"timestamp": rfc3339(time.time_ns()), "active": active, "finished": finished}
    )


def _buffer(actor: SymbolActor, limit: int, now_ns: int) -> dict[str, Any]:
    latest = actor.latest
    overlay, feed, breaker = actor.overlay, actor.feed, actor.breaker
    return {
        "capacity": actor.topic.capacity,
        "published": actor.topic.published,
        "sequence": latest.seq,
        "price": latest.price,
        "staleness_seconds": max(0.0, (now_ns - latest.ts_ns) / 1e9),
        "interval_seconds": actor.interval,
        "recent": [
            [t.seq, t.ts_ms, t.price, t.bid, t.ask, t.volume] for t in _recent(actor, limit)
        ],
        "overlay": None
        if overlay is None
        else {
            "scenarios": [s.id for s in overlay.scenarios],
            "log_offset": overlay.offset,
            "log_excess": overlay.excess,
            "volume_multiplier": overlay.volume,
        },
        "feed": None
        if feed is None
        else {"scenarios": [s.id for s in feed.scenarios], "lost_ticks": feed.lost},
        "breaker": None
        if breaker is None
        else {"open": breaker.open, "reason": breaker.reason, "trips": breaker.trips},
    }


@blueprint.get("/price-buffers")
@validate_querystring(BufferQuery)
async def price_buffers(query_args: BufferQuery) -> Response:
    """Per symbol: the tick ring (``recent`` rows are seq, ms, price, bid, ask, volume),
    scenario overlay, feed disruption and breaker state."""
    market = context().market
    now_ns = time.time_ns()
    return json_response(
        {key: _buffer(actor, query_args.limit, now_ns) for key, actor in market.actors.items()}
    )


@blueprint.get("/correlation-matrix")
@validate_querystring(CorrelationSource)
async def debug_correlations(query_args: CorrelationSource) -> Response:
    """Pearson correlation of log returns between every pair of symbols."""
    ctx = context()
    market = ctx.market
    if query_args.source == "ticks":
        closes = {
            key: [t.price for t in _recent(actor, actor.topic.capacity)]
            for key, actor in market.actors.items()
        }
    else:
        closes = {key: ctx.view.day_closes(key, 240) for key in market.symbols}
    return json_response(
        {
            "source": query_args.source,
            "points": min((len(c) for c in closes.values()), default=0),
            "matrix": correlation_matrix(closes),
        }
    )


def _origin(actor: SymbolActor) -> str:
    """Where a symbol's prices come from before any disruption."""
    if isinstance(actor, DerivedActor):
        leaders = [leader.spec.key for leader in actor.leaders]
        if actor.spec.perpetual:
            return f"perpetual on {leaders[0]}"
        return f"cross of {' and '.join(leaders)}"
    return f"{actor.model.kind} model"


def _disruption(scenario: Scenario, now: float) -> dict[str, Any]:
    shape = scenario.shape
    assert isinstance(shape, Disruption)
    view = scenario_view(scenario, now)
    return {
        "scenario_id": scenario.id,
        "mode": shape.mode.value,
        "latency_ms": shape.latency * 1000.0,
        "jitter_ms": shape.jitter * 1000.0,
        "packet_loss_percentage": shape.loss * 100.0,
        "phase": view["phase"],
        "intensity": view["intensity"],
        "ends_at": view["ends_at"],
    }


@blueprint.get("/data-sources/status")
async def data_sources() -> Response:
    """Each symbol's data sources: the simulator (or the replayed file, or the market
    process a worker is fed by) with its feed status, and every source a feed
    disruption names, with the disruption as it stands."""
    ctx = context()
    market = ctx.market
    now, now_ns = trio.current_time(), time.time_ns()
    disruptions = [s for s in ctx.scenarios.active() if s.kind is ScenarioKind.FEED_DISRUPTION]
    symbols: dict[str, Any] = {}
    for key, actor in market.actors.items():
        status, reason = actor.feed_status(now_ns)
        latest = actor.latest
        primary: dict[str, Any] = {
            "name": market.source,
            "origin": _origin(actor),
            "status": status,
            "reason": reason,
            "last_tick_age_seconds": round(max(0.0, (now_ns - latest.ts_ns) / 1e9), 3),
            "ticks_published": actor.topic.published,
            "disruption": None,
        }
        sources = [primary]
        for scenario in disruptions:
            if key not in scenario.symbols:
                continue
            name = scenario.shape.source  # type: ignore[union-attr]
            disruption = _disruption(scenario, now)
            if name == primary["name"]:
                primary["disruption"] = disruption
            else:
                sources.append(
                    {"name": name, "status": disruption["mode"], "disruption": disruption}
                )
        lost = actor.feed.lost if actor.feed is not None else 0
        symbols[key] = {"sources": sources, "lost_ticks": lost}
    return json_response({"timestamp": rfc3339(now_ns), "symbols": symbols})


@blueprint.get("/subscribers")
async def subscribers() -> Response:
    """Open streams per symbol and transport, drops, and the stream limit."""
    streams = context().streams
    table: dict[str, dict[str, int]] = {}
    for (key, client_type), count in streams.subscribers.items():
        if count:
            table.setdefault(key, {})[client_type] = count
    dropped = [
        {"symbol": key, "client_type": client_type, "reason": reason, "count": count}
        for (key, client_type, reason), count in streams.dropped.items()
    ]
    return json_response(
        {
            "active_streams": streams.active,
            "limit": streams.max_streams,
            "subscribers": table,
            "dropped": dropped,
        }
    )
