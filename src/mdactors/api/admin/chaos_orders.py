"""What a chaos body asks for, as the scenario engine takes it: kind, shape, symbols, timeline.

Pure translation, no I/O: each ``*_order`` function reads one validated body
(:mod:`mdactors.api.admin.chaos_bodies`), resolves its symbols with the caller's
``resolve``, applies the bounds of :class:`Limits`, and returns an
:class:`Order`; anything that cannot be honoured is a :class:`FieldError`
naming the body field. The HTTP routes (:mod:`mdactors.api.admin.chaos`) turn
errors into 422s and start orders on the live market; tests start the same
orders on a market under trio's autojump clock to measure what a body does
over the hours it spans.

Times come in seconds, minutes or hours under any of a quantity's names
(``duration_hours``, ``crash_duration_minutes``, ``recovery_time_seconds``,
...); two that disagree are an error. The old service's field names
(``crash_percentage``, ``symbols``, ``correlation_increase``,
``volume_spike_multiplier``, ``buildup/sustain/recovery_hours``, ``source``,
``pattern``, ``recovery_pattern``) act exactly like ours.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel

from mdactors.api.admin.chaos_bodies import (
    BasisBlowoutBody,
    ConsolidationBody,
    CorrelationBreakBody,
    DivergenceBody,
    FeedDisruptionBody,
    FundingSpikeBody,
    LiquidationCascadeBody,
    MarketCrashBody,
    MeanReversionBody,
    PriceShockBody,
    RallyBody,
    ScenarioBody,
    StablecoinDepegBody,
    VolatilitySpikeBody,
)
from mdactors.domain.funding import funding_offset_bps
from mdactors.domain.overlay import Scenario
from mdactors.domain.scenarios import (
    SIMULATOR_SOURCE,
    Consolidation,
    CorrelationBreak,
    Crash,
    Curve,
    Disruption,
    Divergence,
    FeedMode,
    LiquidationCascade,
    MeanReversion,
    PriceMove,
    ScenarioKind,
    Shape,
    VolatilitySpike,
)
from mdactors.domain.symbols import is_perpetual, spec_for, spot_of
from mdactors.engine.scenarios import ScenarioEngine

__all__ = ["ORDERS", "FieldError", "Limits", "Order", "Plan", "Resolve", "start_order"]

Resolve = Callable[[str, str], str]
"""``(field, raw symbol) -> key`` of a simulated symbol; raises :class:`FieldError`."""


class FieldError(ValueError):
    """The body field ``field`` asks for something that cannot be done."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Limits:
    """The settings that bound scenarios: largest move (fraction) and longest time (s)."""

    max_move: float
    max_seconds: float


@dataclass(frozen=True)
class Plan:
    """A scenario's timeline: duration, recovery and onset in seconds, and its curves."""

    duration: float
    recovery: float
    onset: float = 0.0
    rise: Curve = Curve.SMOOTH
    fall: Curve = Curve.SMOOTH


@dataclass(frozen=True)
class Order:
    """One scenario to start: what it does, to which symbols, on which timeline."""

    kind: ScenarioKind
    shape: Shape | Disruption
    symbols: tuple[str, ...]
    plan: Plan
    params: dict[str, Any]
    shared: bool = False


def start_order(order: Order, engine: ScenarioEngine) -> Scenario:
    """Start ``order`` on ``engine``'s market now; the running scenario."""
    plan = order.plan
    return engine.start(
        order.kind,
        order.shape,
        order.symbols,
        params=order.params,
        shared=order.shared,
        duration=plan.duration,
        recovery=plan.recovery,
        onset=plan.onset,
        rise=plan.rise,
        fall=plan.fall,
    )


_UNITS = {"seconds": 1.0, "minutes": 60.0, "hours": 3600.0}
_DEFAULT_DURATION = 60.0
_DEFAULT_RECOVERY = 30.0


def _seconds(body: BaseModel, *quantities: str) -> float | None:
    """A time given under any of ``quantities`` × seconds/minutes/hours, in seconds.

    ``None`` when none is given; an error naming the second field when two disagree.
    """
    given: list[tuple[str, float]] = []
    for quantity in quantities:
        for unit, factor in _UNITS.items():
            name = f"{quantity}_{unit}"
            value = getattr(body, name, None)
            if value is not None:
                given.append((name, value * factor))
    for name, value in given[1:]:
        first, seconds = given[0]
        if not math.isclose(value, seconds, rel_tol=1e-9, abs_tol=1e-6):
            raise FieldError(name, f"disagrees with {first} ({value:g} s vs {seconds:g} s)")
    return given[0][1] if given else None


def _either(body: BaseModel, old: str, ours: str) -> Any:
    """The value of the old service's field ``old`` or of ours, ``ours`` (both: they agree)."""
    mine, theirs = getattr(body, ours), getattr(body, old)
    if mine is not None and theirs is not None and mine != theirs:
        raise FieldError(old, f"disagrees with {ours} ({theirs!r} vs {mine!r})")
    return theirs if theirs is not None else mine


def _recovery(body: BaseModel) -> float | None:
    return _seconds(body, "recovery_time", "recovery")


def _checked_move(field: str, fraction: float, limits: Limits) -> float:
    """``fraction`` (−0.15 = −15 %), if non-zero and within MAX_PRICE_DEVIATION."""
    if fraction == 0.0 or abs(fraction) > limits.max_move:
        raise FieldError(
            field, f"must be non-zero and within ±{limits.max_move:.0%} (MAX_PRICE_DEVIATION)"
        )
    return fraction


def _checked(plan: Plan, limits: Limits) -> Plan:
    """``plan`` within SCENARIO_TIMEOUT_HOURS, its onset within its duration."""
    times = {"duration_seconds": plan.duration, "recovery_time_seconds": plan.recovery}
    for field, value in times.items():
        if value > limits.max_seconds:
            raise FieldError(
                field, f"must be at most {limits.max_seconds:g} s (SCENARIO_TIMEOUT_HOURS)"
            )
    if plan.onset > plan.duration:
        raise FieldError("onset_seconds", "must not exceed the duration")
    return plan


def _plan(
    body: ScenarioBody,
    *,
    default_onset: str = "sudden",
    default_recovery: float = _DEFAULT_RECOVERY,
    duration: float | None = None,
    onset: float | None = None,
) -> Plan:
    """Duration, recovery and onset from the body's time fields (any unit).

    ``duration``/``onset`` are what the kind's own fields already say (a
    divergence's buildup and sustain).
    """
    if duration is None:
        duration = _seconds(body, "duration") or _DEFAULT_DURATION
    recovery = _recovery(body)
    gradual = (body.onset or default_onset) == "gradual"
    if onset is None:
        onset = _seconds(body, "onset")
        if onset is not None and not gradual:
            raise FieldError("onset_seconds", "needs onset gradual (sudden has none)")
        if onset is None:
            onset = duration / 2.0 if gradual else 0.0
    return Plan(duration, default_recovery if recovery is None else recovery, onset)


def _move_plan(
    body: PriceShockBody | RallyBody | StablecoinDepegBody, move: float, onset: str
) -> Plan:
    """The timeline of a price move under its ``pattern`` (see ``MovePattern``)."""
    pattern = body.pattern
    if pattern in ("sudden_drop", "sudden_spike"):
        if (move < 0) != (pattern == "sudden_drop"):
            sign = "negative" if pattern == "sudden_drop" else "positive"
            raise FieldError("pattern", f"{pattern} needs a {sign} move")
        if body.onset == "gradual":
            raise FieldError("onset", f"{pattern} is sudden")
        return _plan(body, default_onset="sudden")
    if pattern is None:
        return _plan(body, default_onset=onset)
    if body.onset == "sudden":
        raise FieldError("onset", f"{pattern} ramps: it is not sudden")
    duration = _seconds(body, "duration") or _DEFAULT_DURATION
    given = _seconds(body, "onset")
    if pattern == "v_shape":
        if given is not None:
            raise FieldError("onset_seconds", "v_shape ramps over the whole duration")
        recovery = _recovery(body)
        back = duration if recovery is None else recovery
        return Plan(duration, back, duration, Curve.LINEAR, Curve.LINEAR)
    if pattern == "gradual_linear":
        plan = _plan(body, default_onset="gradual", onset=duration if given is None else given)
        return replace(plan, rise=Curve.LINEAR, fall=Curve.LINEAR)
    return _plan(body, default_onset="gradual")  # smooth


def _order(
    kind: ScenarioKind,
    shape: Shape | Disruption,
    symbols: Sequence[str],
    body: BaseModel,
    plan: Plan,
    limits: Limits,
    *,
    shared: bool = False,
) -> Order:
    return Order(
        kind,
        shape,
        tuple(dict.fromkeys(symbols)),
        _checked(plan, limits),
        body.model_dump(exclude_none=True),
        shared,
    )


def _keys(resolve: Resolve, field: str, names: Sequence[str]) -> list[str]:
    if not names:
        raise FieldError(field, "name at least one symbol")
    return [resolve(f"{field}.{index}", name) for index, name in enumerate(names)]


def price_shock_order(body: PriceShockBody, resolve: Resolve, limits: Limits) -> Order:
    """One symbol moves by ``shock_percentage`` (sudden unless ``onset``/``pattern`` say)."""
    move = _checked_move("shock_percentage", body.shock_percentage / 100.0, limits)
    plan = _move_plan(body, move, "sudden")
    shape = PriceMove(move, volume_boost=1.0)
    kind = ScenarioKind.PRICE_SHOCK
    return _order(kind, shape, [resolve("symbol", body.symbol)], body, plan, limits)


def rally_order(body: RallyBody, resolve: Resolve, limits: Limits) -> Order:
    """One symbol climbs by ``shock_percentage`` (gradual unless ``onset``/``pattern`` say)."""
    move = _checked_move("shock_percentage", body.shock_percentage / 100.0, limits)
    plan = _move_plan(body, move, "gradual")
    shape = PriceMove(move, volume_boost=1.0)
    return _order(ScenarioKind.RALLY, shape, [resolve("symbol", body.symbol)], body, plan, limits)


_RECOVERY_CURVES = {
    "smooth": Curve.SMOOTH,
    "linear": Curve.LINEAR,
    "v_shape": Curve.LINEAR,
    "slow_bounce": Curve.SLOW_BOUNCE,
}


def market_crash_order(
    body: MarketCrashBody, resolve: Resolve, limits: Limits, crashable: Sequence[str]
) -> Order:
    """Several symbols (default ``crashable``) fall together; volatility, correlation and
    volume rise. ``crash_duration`` is the fall; the recovery lasts as long unless given."""
    names = _either(body, "symbols", "affect_symbols")
    field = "symbols" if body.symbols is not None else "affect_symbols"
    keys = list(crashable) if names is None else _keys(resolve, field, names)
    drop = _either(body, "crash_percentage", "shock_percentage")
    named = "crash_percentage" if body.crash_percentage is not None else "shock_percentage"
    move = _checked_move(named, (-30.0 if drop is None else drop) / 100.0, limits)
    fall = _seconds(body, "crash_duration")
    if fall is not None:
        duration = _seconds(body, "duration")
        if duration is not None and duration < fall:
            raise FieldError("duration_seconds", "must not be shorter than the crash duration")
        recovery = _recovery(body)
        plan = Plan(duration or fall, fall if recovery is None else recovery, fall)
    else:
        plan = _plan(body, default_onset="gradual")
        if body.recovery_pattern == "v_shape" and _recovery(body) is None:
            plan = replace(plan, recovery=max(plan.onset, 1.0))
    plan = replace(plan, fall=_RECOVERY_CURVES[body.recovery_pattern or "smooth"])
    correlation = _either(body, "correlation_increase", "correlation")
    volume = _either(body, "volume_spike_multiplier", "volume_multiplier")
    shape = Crash(
        move,
        body.volatility_multiplier,
        0.9 if correlation is None else correlation,
        3.0 if volume is None else volume,
    )
    kind = ScenarioKind.MARKET_CRASH
    return _order(kind, shape, keys, body, plan, limits, shared=True)


def stablecoin_depeg_order(body: StablecoinDepegBody, resolve: Resolve, limits: Limits) -> Order:
    """A stablecoin drifts ``target_deviation`` off its peg (gradual by default), its
    volatility × ``volatility_increase`` at full strength."""
    move = _checked_move("target_deviation", body.target_deviation, limits)
    plan = _move_plan(body, move, "gradual")
    shape = PriceMove(move, volume_boost=2.0, volatility=body.volatility_increase)
    kind = ScenarioKind.STABLECOIN_DEPEG
    return _order(kind, shape, [resolve("symbol", body.symbol)], body, plan, limits)


def volatility_spike_order(body: VolatilitySpikeBody, resolve: Resolve, limits: Limits) -> Order:
    """The symbol's volatility × up to ``volatility_multiplier``, amplified or as a random
    walk; ``preserve_trend`` keeps the price on the model's path."""
    shape = VolatilitySpike(
        body.volatility_multiplier,
        random_walk=body.pattern == "random_walk",
        preserve_trend=body.preserve_trend,
    )
    kind = ScenarioKind.VOLATILITY_SPIKE
    return _order(kind, shape, [resolve("symbol", body.symbol)], body, _plan(body), limits)


def divergence_order(body: DivergenceBody, resolve: Resolve, limits: Limits) -> Order:
    """``target_symbol`` drifts ``max_spread_bps`` from ``base_symbol`` over the buildup,
    holds for the sustain, and comes back over the recovery."""
    base = resolve("base_symbol", body.base_symbol)
    target = resolve("target_symbol", body.target_symbol)
    if base == target:
        raise FieldError("target_symbol", "must differ from base_symbol")
    _checked_move("max_spread_bps", body.max_spread_bps / 10_000.0, limits)
    buildup = _seconds(body, "buildup", "onset")
    sustain = _seconds(body, "sustain")
    duration = _seconds(body, "duration")
    if sustain is not None:
        total = (buildup or 0.0) + sustain
        if duration is not None and not math.isclose(duration, total, abs_tol=1e-6):
            raise FieldError(
                "sustain_seconds", f"buildup + sustain ({total:g} s) disagrees with the duration"
            )
        duration = total
    elif buildup is not None and duration is None:
        duration = buildup
    plan = _plan(body, default_onset="gradual", duration=duration, onset=buildup)
    if body.pattern == "gradual_linear":
        plan = replace(plan, rise=Curve.LINEAR, fall=Curve.LINEAR)
    shape = Divergence(base, target, body.max_spread_bps)
    return _order(ScenarioKind.GRADUAL_DIVERGENCE, shape, [base, target], body, plan, limits)


def correlation_break_order(body: CorrelationBreakBody, resolve: Resolve, limits: Limits) -> Order:
    """The symbol's returns become independent of the market factor."""
    key = resolve("symbol", body.symbol)
    kind = ScenarioKind.CORRELATION_BREAK
    return _order(kind, CorrelationBreak(), [key], body, _plan(body), limits)


def consolidation_order(body: ConsolidationBody, resolve: Resolve, limits: Limits) -> Order:
    """The symbol trades in a tight range around its current price."""
    shape = Consolidation(body.volatility_damping, body.half_life_seconds)
    plan = _plan(body, default_onset="gradual")
    kind = ScenarioKind.CONSOLIDATION
    return _order(kind, shape, [resolve("symbol", body.symbol)], body, plan, limits)


def mean_reversion_order(body: MeanReversionBody, resolve: Resolve, limits: Limits) -> Order:
    """Moves away from the symbol's current price decay with ``half_life_seconds``."""
    shape = MeanReversion(body.half_life_seconds)
    kind = ScenarioKind.MEAN_REVERSION
    return _order(kind, shape, [resolve("symbol", body.symbol)], body, _plan(body), limits)


def feed_disruption_order(body: FeedDisruptionBody, resolve: Resolve, limits: Limits) -> Order:
    """Latency with jitter, lost ticks, a stale feed or an outage on some symbols, as the
    disruption of the data ``source`` it names."""
    if (body.symbol is None) == (body.affect_symbols is None):
        raise FieldError("symbol", "give exactly one of symbol and affect_symbols")
    keys = (
        [resolve("symbol", body.symbol)]
        if body.symbol is not None
        else _keys(resolve, "affect_symbols", body.affect_symbols or [])
    )
    shape = Disruption(
        body.latency_ms / 1000.0,
        body.jitter_ms / 1000.0,
        body.packet_loss_percentage / 100.0,
        FeedMode(body.mode),
        body.republish,
        source=body.source or SIMULATOR_SOURCE,
    )
    plan = _plan(body, default_recovery=0.0)
    return _order(ScenarioKind.FEED_DISRUPTION, shape, keys, body, plan, limits)


def _perpetual(resolve: Resolve, raw: str) -> tuple[str, str]:
    """``(spot, perpetual)`` keys of the simulated perpetual ``raw`` names."""
    key = resolve("symbol", raw)
    if not is_perpetual(key):
        raise FieldError("symbol", f"{raw!r} is not a perpetual (e.g. BTC-USD-PERP)")
    return spot_of(key), key


def funding_spike_order(body: FundingSpikeBody, resolve: Resolve, limits: Limits) -> Order:
    """The perpetual trades at the premium that makes its funding ``target_funding_rate``:
    its bid (ask, for a discount) that far from the index, half a spread beyond the mid."""
    spot, perpetual = _perpetual(resolve, body.symbol)
    bps = funding_offset_bps(body.target_funding_rate, spec_for(perpetual))
    _checked_move("target_funding_rate", bps / 10_000.0 or 1e-12, limits)
    plan = _plan(body, default_onset="gradual")
    shape = Divergence(spot, perpetual, bps)
    return _order(ScenarioKind.FUNDING_SPIKE, shape, [perpetual], body, plan, limits)


def basis_blowout_order(body: BasisBlowoutBody, resolve: Resolve, limits: Limits) -> Order:
    """The perpetual's premium over its spot goes to ``basis_bps`` and back."""
    spot, perpetual = _perpetual(resolve, body.symbol)
    _checked_move("basis_bps", body.basis_bps / 10_000.0, limits)
    plan = _plan(body, default_onset="gradual")
    shape = Divergence(spot, perpetual, body.basis_bps)
    return _order(ScenarioKind.BASIS_BLOWOUT, shape, [perpetual], body, plan, limits)


def liquidation_cascade_order(
    body: LiquidationCascadeBody, resolve: Resolve, limits: Limits
) -> Order:
    """The spot falls ``drop_percentage`` at once, the perpetual with it; liquidations ×
    ``liquidation_intensity`` and spreads × ``spread_multiplier`` on both while it lasts."""
    spot, perpetual = _perpetual(resolve, body.symbol)
    move = _checked_move("drop_percentage", body.drop_percentage / 100.0, limits)
    shape = LiquidationCascade(
        spot, perpetual, move, body.liquidation_intensity, body.spread_multiplier
    )
    plan = _plan(body, default_onset="gradual")
    kind = ScenarioKind.LIQUIDATION_CASCADE
    return _order(kind, shape, [spot, perpetual], body, plan, limits)


ORDERS: dict[str, tuple[type[BaseModel], Callable[..., Order]]] = {
    "price-shock": (PriceShockBody, price_shock_order),
    "rally": (RallyBody, rally_order),
    "market-crash": (MarketCrashBody, market_crash_order),
    "stablecoin-depeg": (StablecoinDepegBody, stablecoin_depeg_order),
    "volatility-spike": (VolatilitySpikeBody, volatility_spike_order),
    "gradual-divergence": (DivergenceBody, divergence_order),
    "correlation-break": (CorrelationBreakBody, correlation_break_order),
    "consolidation": (ConsolidationBody, consolidation_order),
    "mean-reversion": (MeanReversionBody, mean_reversion_order),
    "feed-disruption": (FeedDisruptionBody, feed_disruption_order),
    "funding-spike": (FundingSpikeBody, funding_spike_order),
    "basis-blowout": (BasisBlowoutBody, basis_blowout_order),
    "liquidation-cascade": (LiquidationCascadeBody, liquidation_cascade_order),
}
"""Every ``POST /chaos/<kind>`` route: its body model and the function making its order."""
