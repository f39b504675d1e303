"""``GenerateSimulation``: validate the request, read history, simulate off the event loop.

Transport-agnostic like :mod:`mdactors.api.rpc.service` (which delegates here): the
result is the encoded ``SimulationResponse``, failures are
:class:`~mdactors.api.rpc.service.RpcError`.

The grid: ``[start_time, end_time)`` (default: the 24 h before now) cut into
``data_points`` bars (default one a minute, at most 1440). ``historical_data``
is the symbol's candles as the read model serves them (history store, then the
start-up backfill as deep as ``BACKFILL_DAYS``) folded onto that grid, completed by its
model where nothing is recorded; ``simulated_data`` is the requested kind of
simulation on the same grid from the same start price (see
:mod:`mdactors.domain.simulation`); ``similarity_metrics`` compare the two
closes with :func:`mdactors.domain.similarity.similarity`. The maths and the
encoding run in a worker thread (at most two at once), so a big request
never stalls the feed. Results are deterministic for a given market seed and
request.
"""

from __future__ import annotations

import math
import secrets
import time
import zlib
from dataclasses import dataclass

import numpy as np
import trio

from mdactors._proto import marketdata_pb2 as pb
from mdactors.api.context import ApiContext
from mdactors.api.rpc.proto_codec import Encoded
from mdactors.api.rpc.simulation_codec import MAX_SECONDS, MIN_SECONDS, price_points
from mdactors.api.rpc.status import invalid_argument, request_enum, request_symbol
from mdactors.domain.bars import Bars, grid_bars
from mdactors.domain.candles import INTERVALS
from mdactors.domain.model_config import model_for
from mdactors.domain.models import PriceModel
from mdactors.domain.reference import complete_history
from mdactors.domain.similarity import similarity
from mdactors.domain.simulation import (
    DEFAULT_NOISE_LEVEL,
    SimulationError,
    SimulationKind,
    SimulationParams,
    bar_volatility,
    simulate,
)
from mdactors.domain.symbols import spec_for
from mdactors.engine.market_view import MarketView

__all__ = [
    "DEFAULT_POINTS",
    "MAX_POINTS",
    "SimulationPlan",
    "generate_simulation",
    "plan_simulation",
]

#: Most points per series one request may ask for.
MAX_POINTS = 100_000
#: Points when ``data_points`` is 0: one a minute, at most this many.
DEFAULT_POINTS = 1_440
MAX_SPAN_NS = 366 * 86_400 * 10**9
_DAY_NS = 86_400 * 10**9
_MIN_POINTS = 3
_MIN_STEP_NS = 1_000_000
_THREADS: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("simulation_threads")


@dataclass(frozen=True, slots=True)
class SimulationPlan:
    """A validated ``GenerateSimulation`` request: ``points`` bars of ``step_ns``."""

    spelling: str
    key: str
    kind: SimulationKind
    params: SimulationParams
    start_ns: int
    step_ns: int
    points: int

    @property
    def end_ns(self) -> int:
        """The end of the grid (exclusive)."""
        return self.start_ns + self.step_ns * self.points

    def seed(self, market_seed: int) -> list[int]:
        """Entropy for this plan's generator: the market seed and the request's content."""
        return [market_seed, zlib.crc32(repr(self).encode())]


def _span(request: pb.SimulationRequest, now_ns: int) -> tuple[int, int]:
    end_ns = request.end_time.ToNanoseconds() if request.HasField("end_time") else now_ns
    if request.HasField("start_time"):
        start_ns = request.start_time.ToNanoseconds()
    else:
        start_ns = end_ns - _DAY_NS
    for name, value in (("start_time", start_ns), ("end_time", end_ns)):
        if not MIN_SECONDS * 10**9 <= value <= MAX_SECONDS * 10**9:
            raise invalid_argument(f"{name} must lie between 1978 and 3058")
    if end_ns <= start_ns:
        raise invalid_argument("end_time must be after start_time")
    if end_ns - start_ns > MAX_SPAN_NS:
        raise invalid_argument("the span from start_time to end_time must be at most 366 days")
    return start_ns, end_ns


def _points(requested: int, span_ns: int) -> int:
    if requested < 0:
        raise invalid_argument(f"data_points must be ≥ 0 (0 = one a minute), got {requested}")
    if requested > MAX_POINTS:
        raise invalid_argument(f"data_points must be at most {MAX_POINTS}, got {requested}")
    points = requested or min(DEFAULT_POINTS, max(_MIN_POINTS, span_ns // 60_000_000_000))
    if points < _MIN_POINTS:
        raise invalid_argument(f"data_points must be at least {_MIN_POINTS} to compare series")
    if span_ns // points < _MIN_STEP_NS:
        raise invalid_argument(
            f"{points} data_points over {span_ns / 1e9:g} s is finer than one a millisecond"
        )
    return points


def _params(message: pb.SimulationParameters) -> SimulationParams:
    try:
        return SimulationParams(
            volatility_factor=message.volatility_factor or 1.0,
            trend_factor=message.trend_factor,
            include_noise=message.include_noise,
            noise_level=message.noise_level or DEFAULT_NOISE_LEVEL,
        )
    except SimulationError as error:
        raise invalid_argument(f"parameters.{error}") from None


def plan_simulation(request: pb.SimulationRequest, now_ns: int) -> SimulationPlan:
    """Validate ``request``; :class:`RpcError` INVALID_ARGUMENT names what is wrong."""
    spelling = request.symbol
    key = request_symbol(spelling)
    kind = request_enum(SimulationKind, request.simulation_type, "simulation_type")
    params = _params(request.parameters)
    start_ns, end_ns = _span(request, now_ns)
    points = _points(request.parameters.data_points, end_ns - start_ns)
    return SimulationPlan(
        spelling, key, kind, params, start_ns, (end_ns - start_ns) // points, points
    )


def _interval(step_ns: int) -> str:
    """The coarsest candle interval no longer than a step (one minute at least)."""
    fitting = [name for name, seconds in INTERVALS.items() if seconds * 10**9 <= step_ns]
    return fitting[-1] if fitting else "1m"


async def _recorded(view: MarketView, plan: SimulationPlan) -> Bars:
    """The market's own candles over the plan's range (the history store's, the
    start-up backfill's before it, and the forming one), on the plan's grid."""
    interval = _interval(plan.step_ns)
    interval_ns = INTERVALS[interval] * 10**9
    limit = min((plan.end_ns - plan.start_ns) // interval_ns + 1, 2 * MAX_POINTS)
    candles = await view.candles(
        plan.key, interval, plan.start_ns // 10**6, (plan.end_ns - 1) // 10**6, limit
    )
    return grid_bars(candles, plan.start_ns, plan.step_ns, plan.points)


def simulation_id(key: str, now_ns: int) -> str:
    """``sim_<symbol>_<unix seconds>_<8 hex>`` (``BTC-USD`` for ``BTC/USD``)."""
    return f"sim_{key.replace('/', '-')}_{now_ns // 10**9}_{secrets.token_hex(4)}"


def _build(
    plan: SimulationPlan,
    recorded: Bars,
    model: PriceModel,
    anchor_price: float,
    rng: np.random.Generator,
    ident: str,
) -> Encoded:
    """The whole computation (worker thread): history, simulation, metrics, bytes."""
    spec = spec_for(plan.key)
    historical, _ = complete_history(recorded, model, spec, anchor_price, rng)
    step_years = plan.step_ns / 1e9 / (365.0 * 86_400.0)
    fallback = max(model.volatility * math.sqrt(step_years), 1e-12)
    simulated = simulate(plan.kind, historical, plan.params, rng, fallback_sigma=fallback)
    if bar_volatility(historical.prices()) == 0.0 and bar_volatility(simulated.prices()) == 0.0:
        metrics = pb.StatisticalMetrics(
            correlation_coefficient=1.0,
            volatility_similarity=1.0,
            return_distribution_similarity=1.0,
            trend_similarity=1.0,
            confidence_score=1.0,
        )
    else:
        measured = similarity(historical.prices(), simulated.prices())
        metrics = pb.StatisticalMetrics(
            correlation_coefficient=measured.correlation_coefficient,
            volatility_similarity=measured.volatility_similarity,
            return_distribution_similarity=measured.return_distribution_similarity,
            trend_similarity=measured.trend_similarity,
            confidence_score=measured.confidence_score,
        )
    head = pb.SimulationResponse(
        symbol=plan.spelling, similarity_metrics=metrics, simulation_id=ident
    ).SerializeToString()
    return Encoded(head + price_points(2, historical) + price_points(3, simulated))


async def generate_simulation(ctx: ApiContext, request: pb.SimulationRequest) -> Encoded:
    """Answer ``GenerateSimulation`` (encoded ``SimulationResponse``); see the module docstring."""
    now_ns = time.time_ns()
    plan = plan_simulation(request, now_ns)
    market = ctx.market
    recorded = await _recorded(ctx.view, plan)
    spec = spec_for(plan.key)
    if plan.key in market.actors:
        model = market.actor(plan.key).model
    else:
        model = model_for(spec, ctx.settings.model_config)
    # A range with no recorded bar is drawn from the model ending at the seed price,
    # not the live one: the same request then gives the same reference path.
    anchor_price = spec.seed_price
    rng = np.random.default_rng(plan.seed(market.seed))
    try:
        limiter = _THREADS.get()
    except LookupError:
        limiter = trio.CapacityLimiter(2)
        _THREADS.set(limiter)
    ident = simulation_id(plan.key, now_ns)
    return await trio.to_thread.run_sync(
        _build, plan, recorded, model, anchor_price, rng, ident, limiter=limiter
    )
