"""``StreamScenario``: a scenario on a symbol's own model, streamed as price updates.

Transport-agnostic (see :mod:`mdactors.api.rpc.service`). The request becomes a
:class:`~mdactors.domain.scenario_feed.ScenarioPlan`; the stream starts from
the symbol's live price (or its reference price when it is not simulated)
and is deterministic for a given market seed and request. Timestamps are
simulated time from ``start_time`` (default: now); ``playback_speed``
simulated seconds are sent per wall-clock second. Every update waits for its
due time, which is the handler's real await per message (purerpc rule).
Source: ``scenario-simulator``.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import trio

from mdactors._proto import marketdata_pb2 as pb
from mdactors.api.context import ApiContext
from mdactors.api.rpc.proto_codec import timestamp
from mdactors.api.rpc.status import (
    draining_error,
    invalid_argument,
    request_enum,
    request_symbol,
)
from mdactors.domain.model_config import model_for
from mdactors.domain.scenario_feed import (
    PERPETUAL_TYPES,
    FeedStep,
    ScenarioFeed,
    ScenarioPlan,
    ScenarioType,
)
from mdactors.domain.symbols import is_perpetual, spec_for

__all__ = ["SCENARIO_SOURCE", "ScenarioRequestPlan", "plan_scenario", "scenario_updates"]

SCENARIO_SOURCE = "scenario-simulator"
DEFAULT_MINUTES = 10
MAX_MINUTES = 1_440
MAX_SPEED = 100_000.0
#: Most updates one stream sends; longer scenarios get a coarser step (≥ 1 s).
MAX_UPDATES = 7_200


@dataclass(frozen=True, slots=True)
class ScenarioRequestPlan:
    """A validated ``StreamScenario`` request."""

    spelling: str
    key: str
    plan: ScenarioPlan
    start_ns: int
    speed: float


def _within(name: str, value: float, low: float, high: float, default: float) -> float:
    """``value`` (0 = ``default``) checked against ``low..high``."""
    if value == 0.0:
        return default
    if not (math.isfinite(value) and low <= value <= high):
        raise invalid_argument(
            f"{name} must be within {low:g}..{high:g} (0 = {default:g}), got {value!r}"
        )
    return value


def plan_scenario(request: pb.ScenarioRequest, now_ns: int) -> ScenarioRequestPlan:
    """Validate ``request``; :class:`RpcError` INVALID_ARGUMENT names what is wrong."""
    key = request_symbol(request.symbol)
    kind = request_enum(ScenarioType, request.scenario_type, "scenario_type")
    if kind in PERPETUAL_TYPES and not is_perpetual(key):
        raise invalid_argument(
            f"scenario_type {kind.name} is a perpetual's; {request.symbol[:40]!r} is not one "
            "(e.g. BTC-USD-PERP)"
        )
    params = request.parameters
    intensity = _within("parameters.intensity", params.intensity, 0.1, 2.0, 1.0)
    duration_factor = _within("parameters.duration_factor", params.duration_factor, 0.1, 10, 1.0)
    recovery = params.recovery_factor
    if not (math.isfinite(recovery) and 0.0 <= recovery <= 1.0):
        raise invalid_argument(f"parameters.recovery_factor must be within 0..1, got {recovery!r}")
    minutes = request.duration_minutes
    if not 0 <= minutes <= MAX_MINUTES:
        raise invalid_argument(
            f"duration_minutes must be within 1..{MAX_MINUTES} (0 = 10), got {minutes}"
        )
    speed = _within("playback_speed", request.playback_speed, 1e-3, MAX_SPEED, 1.0)
    start_ns = request.start_time.ToNanoseconds() if request.HasField("start_time") else now_ns
    if start_ns < 0:
        raise invalid_argument("start_time must not be before 1970")
    window = (minutes or DEFAULT_MINUTES) * 60.0 * duration_factor
    step = max(1.0, window / MAX_UPDATES)
    plan = ScenarioPlan(kind, intensity, window, step, recovery, params.gradual_transition)
    return ScenarioRequestPlan(request.symbol, key, plan, start_ns, speed)


def _update(spelling: str, key: str, seq: int, ts_ns: int, step: FeedStep) -> pb.PriceUpdate:
    return pb.PriceUpdate(
        symbol=spelling,
        price=step.price,
        volume=step.volume,
        timestamp=timestamp(ts_ns),
        source=SCENARIO_SOURCE,
        change_info=pb.PriceChangeInfo(
            change_amount=step.change,
            change_percentage=step.change_pct,
            daily_high=step.high,
            daily_low=step.low,
            daily_volume=step.total_volume,
        ),
        sequence=seq,
        bid=step.bid,
        ask=step.ask,
        timestamp_ns=ts_ns,
        key=key,
    )


async def scenario_updates(
    ctx: ApiContext, request: pb.ScenarioRequest
) -> AsyncIterator[pb.PriceUpdate]:
    """The updates of one ``StreamScenario`` call, each sent at its due time.

    Validation errors are raised before the first update. The stream ends
    after the scenario's window, or with UNAVAILABLE when the server drains.
    """
    planned = plan_scenario(request, time.time_ns())
    market = ctx.market
    spec = spec_for(planned.key)
    if planned.key in market.actors:
        actor = market.actor(planned.key)
        model, price = actor.model, actor.latest.price
    else:
        model, price = model_for(spec, ctx.settings.model_config), spec.seed_price
    seed = zlib.crc32(repr((planned.key, planned.plan, planned.start_ns)).encode())
    rng = np.random.default_rng([market.seed, seed])
    feed = ScenarioFeed(planned.plan, spec, model, price, rng, start_ns=planned.start_ns)
    draining = ctx.lifecycle.draining
    started = trio.current_time()
    for seq, step in enumerate(feed, start=1):
        with trio.move_on_at(started + step.t / planned.speed):
            await draining.wait()
        if draining.is_set():
            raise draining_error()
        ts_ns = planned.start_ns + round(step.t * 1e9)
        yield _update(planned.spelling, planned.key, seq, ts_ns, step)
