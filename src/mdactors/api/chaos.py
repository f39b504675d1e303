"""The chaos API: start, list and stop scenarios; reset price circuit breakers.

Each ``POST /chaos/<kind>`` validates its body (422 naming the field),
resolves symbols, builds the scenario's pure shape and hands it to the
:class:`~mdactors.engine.scenarios.ScenarioEngine`; the answer (201) is the
scenario with its id and timeline.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio
from quart import Response
from quart_schema import validate_request

from mdactors.api.admin import admin_blueprint, invalid_field, scenario_view
from mdactors.api.chaos_bodies import (
    BreakerResetBody,
    ConsolidationBody,
    CorrelationBreakBody,
    DivergenceBody,
    FeedDisruptionBody,
    MarketCrashBody,
    MeanReversionBody,
    PriceShockBody,
    RallyBody,
    ScenarioBody,
    StablecoinDepegBody,
    VolatilitySpikeBody,
)
from mdactors.api.errors import ApiError
from mdactors.api.web import context, json_response
from mdactors.domain.scenarios import (
    Consolidation,
    CorrelationBreak,
    Crash,
    Disruption,
    Divergence,
    FeedMode,
    MeanReversion,
    PriceMove,
    ScenarioKind,
    Shape,
    VolatilitySpike,
)
from mdactors.domain.symbols import SymbolError
from mdactors.engine.market import UnknownSymbol
from mdactors.engine.scenarios import ScenariosElsewhere, TooManyScenarios, UnknownScenario

__all__ = ["blueprint"]

blueprint = admin_blueprint("chaos", "/chaos")


def _key(field: str, raw: str) -> str:
    """The simulated symbol ``raw`` names, or a 422 naming ``field``."""
    try:
        return context().market.resolve(raw)
    except (SymbolError, UnknownSymbol) as error:
        known = ", ".join(context().market.symbols)
        raise invalid_field(field, f"{error}; known: {known}") from None


def _keys(field: str, names: Sequence[str]) -> list[str]:
    if not names:
        raise invalid_field(field, "name at least one symbol")
    return [_key(f"{field}.{index}", name) for index, name in enumerate(names)]


def _check_move(field: str, fraction: float) -> None:
    """``fraction`` (−0.15 = −15 %) must be non-zero and within MAX_PRICE_DEVIATION."""
    limit = context().settings.max_price_deviation / 100.0
    if fraction == 0.0 or abs(fraction) > limit:
        raise invalid_field(
            field, f"must be non-zero and within ±{limit:.0%} (MAX_PRICE_DEVIATION)"
        )


def _timing(body: ScenarioBody | FeedDisruptionBody, default_onset: str) -> dict[str, float]:
    """Duration, recovery and onset in seconds, bounded by SCENARIO_TIMEOUT_HOURS."""
    limit = context().settings.scenario_timeout_hours * 3600.0
    for field in ("duration_seconds", "recovery_time_seconds"):
        if getattr(body, field) > limit:
            raise invalid_field(field, f"must be at most {limit:g} s (SCENARIO_TIMEOUT_HOURS)")
    duration = body.duration_seconds
    onset = 0.0
    if isinstance(body, ScenarioBody):
        gradual = (body.onset or default_onset) == "gradual"
        if body.onset_seconds is not None and gradual:
            onset = body.onset_seconds
        elif gradual:
            onset = duration / 2.0
        if onset > duration:
            raise invalid_field("onset_seconds", "must not exceed duration_seconds")
    return {"duration": duration, "recovery": body.recovery_time_seconds, "onset": onset}


def _start(
    kind: ScenarioKind,
    shape: Shape | Disruption,
    symbols: Sequence[str],
    body: ScenarioBody | FeedDisruptionBody,
    *,
    onset: str = "sudden",
    shared: bool = False,
) -> Response:
    ctx = context()
    try:
        scenario = ctx.scenarios.start(
            kind,
            shape,
            symbols,
            params=body.model_dump(exclude_none=True),
            shared=shared,
            **_timing(body, onset),
        )
    except TooManyScenarios as error:
        raise ApiError(429, "too_many_scenarios", str(error)) from None
    except ScenariosElsewhere as error:
        raise ApiError(409, "scenarios_elsewhere", str(error)) from None
    return json_response(scenario_view(scenario, trio.current_time()), 201)


def _on_symbol(
    kind: ScenarioKind,
    shape: Shape,
    body: ScenarioBody,
    symbol: str,
    *,
    onset: str = "sudden",
) -> Response:
    """Start a one-symbol scenario on ``symbol`` (from the body's ``symbol`` field)."""
    return _start(kind, shape, [_key("symbol", symbol)], body, onset=onset)


def _move(kind: ScenarioKind, data: PriceShockBody | RallyBody, onset: str) -> Response:
    """A price shock or rally: ``shock_percentage`` on ``symbol``, volume doubled at the peak."""
    _check_move("shock_percentage", data.shock_percentage / 100.0)
    shape = PriceMove(data.shock_percentage / 100.0, volume_boost=1.0)
    return _on_symbol(kind, shape, data, data.symbol, onset=onset)


@blueprint.post("/price-shock")
@validate_request(PriceShockBody)
async def price_shock(data: PriceShockBody) -> Response:
    """One symbol moves by ``shock_percentage`` (sudden unless ``onset`` says otherwise)."""
    return _move(ScenarioKind.PRICE_SHOCK, data, "sudden")


@blueprint.post("/rally")
@validate_request(RallyBody)
async def rally(data: RallyBody) -> Response:
    """One symbol climbs by ``shock_percentage`` (gradual unless ``onset`` says otherwise)."""
    return _move(ScenarioKind.RALLY, data, "gradual")


@blueprint.post("/market-crash")
@validate_request(MarketCrashBody)
async def market_crash(data: MarketCrashBody) -> Response:
    """Several symbols fall together with rising volatility, correlation and volume."""
    market = context().market
    if data.affect_symbols is None:
        keys = [key for key in market.symbols if market.actor(key).model.kind != "ou"]
    else:
        keys = _keys("affect_symbols", data.affect_symbols)
    _check_move("shock_percentage", data.shock_percentage / 100.0)
    shape = Crash(
        data.shock_percentage / 100.0,
        data.volatility_multiplier,
        data.correlation,
        data.volume_multiplier,
    )
    return _start(ScenarioKind.MARKET_CRASH, shape, keys, data, onset="gradual", shared=True)


@blueprint.post("/stablecoin-depeg")
@validate_request(StablecoinDepegBody)
async def stablecoin_depeg(data: StablecoinDepegBody) -> Response:
    """A stablecoin drifts ``target_deviation`` off its peg (gradual by default)."""
    _check_move("target_deviation", data.target_deviation)
    shape = PriceMove(data.target_deviation, volume_boost=2.0)
    return _on_symbol(ScenarioKind.STABLECOIN_DEPEG, shape, data, data.symbol, onset="gradual")


@blueprint.post("/volatility-spike")
@validate_request(VolatilitySpikeBody)
async def volatility_spike(data: VolatilitySpikeBody) -> Response:
    """The symbol's returns are scaled by up to ``volatility_multiplier``."""
    shape = VolatilitySpike(data.volatility_multiplier)
    return _on_symbol(ScenarioKind.VOLATILITY_SPIKE, shape, data, data.symbol)


@blueprint.post("/gradual-divergence")
@validate_request(DivergenceBody)
async def gradual_divergence(data: DivergenceBody) -> Response:
    """``target_symbol`` drifts ``max_spread_bps`` away from ``base_symbol``."""
    base = _key("base_symbol", data.base_symbol)
    target = _key("target_symbol", data.target_symbol)
    if base == target:
        raise invalid_field("target_symbol", "must differ from base_symbol")
    _check_move("max_spread_bps", data.max_spread_bps / 10_000.0)
    shape = Divergence(base, target, data.max_spread_bps)
    return _start(ScenarioKind.GRADUAL_DIVERGENCE, shape, [base, target], data, onset="gradual")


@blueprint.post("/correlation-break")
@validate_request(CorrelationBreakBody)
async def correlation_break(data: CorrelationBreakBody) -> Response:
    """The symbol's returns become independent of the market factor."""
    return _on_symbol(ScenarioKind.CORRELATION_BREAK, CorrelationBreak(), data, data.symbol)


@blueprint.post("/consolidation")
@validate_request(ConsolidationBody)
async def consolidation(data: ConsolidationBody) -> Response:
    """The symbol trades in a tight range around its current price."""
    shape = Consolidation(data.volatility_damping, data.half_life_seconds)
    return _on_symbol(ScenarioKind.CONSOLIDATION, shape, data, data.symbol, onset="gradual")


@blueprint.post("/mean-reversion")
@validate_request(MeanReversionBody)
async def mean_reversion(data: MeanReversionBody) -> Response:
    """Moves away from the symbol's current price decay with ``half_life_seconds``."""
    shape = MeanReversion(data.half_life_seconds)
    return _on_symbol(ScenarioKind.MEAN_REVERSION, shape, data, data.symbol)


@blueprint.post("/feed-disruption")
@validate_request(FeedDisruptionBody)
async def feed_disruption(data: FeedDisruptionBody) -> Response:
    """Latency with jitter, lost ticks, a stale feed or an outage on some symbols."""
    if (data.symbol is None) == (data.affect_symbols is None):
        raise invalid_field("symbol", "give exactly one of symbol and affect_symbols")
    keys = (
        [_key("symbol", data.symbol)]
        if data.symbol is not None
        else _keys("affect_symbols", data.affect_symbols or [])
    )
    shape = Disruption(
        data.latency_ms / 1000.0,
        data.jitter_ms / 1000.0,
        data.packet_loss_percentage / 100.0,
        FeedMode(data.mode),
        data.republish,
    )
    return _start(ScenarioKind.FEED_DISRUPTION, shape, keys, data)


@blueprint.get("/active-scenarios")
async def active_scenarios() -> Response:
    """Every scenario not yet over (recovering ones included), oldest first."""
    now = trio.current_time()
    scenarios = [scenario_view(s, now) for s in context().scenarios.active()]
    return json_response({"scenarios": scenarios, "count": len(scenarios)})


@blueprint.delete("/stop-scenario/<scenario_id>")
async def stop_scenario(scenario_id: str) -> Response:
    """Start the scenario's recovery now; it is over once the recovery ends."""
    try:
        scenario = context().scenarios.stop(scenario_id)
    except UnknownScenario:
        raise ApiError(
            404, "unknown_scenario", f"no active scenario {scenario_id[:80]!r}"
        ) from None
    return json_response(scenario_view(scenario, trio.current_time()))


@blueprint.post("/circuit-breaker/reset")
@validate_request(BreakerResetBody)
async def reset_breaker(data: BreakerResetBody) -> Response:
    """Close the price circuit breaker of ``symbol`` (default: every symbol)."""
    ctx = context()
    if ctx.scenarios.elsewhere is not None:  # the breakers that trip are the market process's
        raise ApiError(409, "scenarios_elsewhere", ctx.scenarios.elsewhere)
    market = ctx.market
    keys = [_key("symbol", data.symbol)] if data.symbol is not None else market.symbols
    reset = []
    for key in keys:
        breaker = market.actor(key).breaker
        if breaker is not None and breaker.open:
            breaker.reset()
            reset.append(key)
    return json_response({"reset": reset, "halted_symbols": market.halted()})
