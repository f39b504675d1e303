"""The chaos API: start, list and stop scenarios; reset price circuit breakers.

Each ``POST /chaos/<kind>`` validates its body (422 naming the field),
resolves symbols, builds the scenario's pure shape and hands it to the
:class:`~mdactors.engine.scenarios.ScenarioEngine`; the answer (201) is the
scenario with its id and timeline.
"""

from __future__ import annotations

from collections.abc import Callable

import trio
from pydantic import BaseModel
from quart import Response, request
from quart_schema import validate_request

from mdactors.api.admin.chaos_bodies import BreakerResetBody
from mdactors.api.admin.chaos_orders import ORDERS, FieldError, Limits, Order, start_order
from mdactors.api.admin.chaos_schema import chaos_schema
from mdactors.api.admin.guard import admin_blueprint, invalid_field, scenario_view
from mdactors.api.http.errors import HTTP_ERRORS, ApiError
from mdactors.api.http.web import context, json_response
from mdactors.domain.symbols import SymbolError
from mdactors.engine.market import UnknownSymbol
from mdactors.engine.scenarios import ScenariosElsewhere, TooManyScenarios, UnknownScenario

__all__ = ["blueprint"]

blueprint = admin_blueprint("chaos", "/chaos")

_JSON_AS_SENT = {"", "application/x-www-form-urlencoded", "text/plain"}
"""Labels a JSON body arrives with from ``curl -d`` (no ``-H``) and similar: the old
service's README examples send exactly that, so these bodies are read as JSON."""


@blueprint.before_request
async def read_bodies_as_json() -> None:
    """Read a POST body as JSON whatever ``curl -d`` labelled it; 415 for other media."""
    if request.method != "POST":
        return
    mimetype = request.mimetype
    if mimetype in _JSON_AS_SENT:
        await request.get_json(force=True)  # parsed once and cached for the route's validation
    elif not request.is_json:
        raise ApiError(
            415, "unsupported_media_type", f"send the body as JSON, not {mimetype[:60]!r}"
        )


def _key(field: str, raw: str) -> str:
    """The simulated symbol ``raw`` names, or a :class:`FieldError` naming ``field``.

    The reason is the engine error in the HTTP API's words (:data:`HTTP_ERRORS`);
    the answer stays the chaos API's 422 naming the body field.
    """
    try:
        return context().market.resolve(raw)
    except (SymbolError, UnknownSymbol) as error:
        raise FieldError(field, HTTP_ERRORS(error).message) from None


def _limits() -> Limits:
    settings = context().settings
    return Limits(settings.max_price_deviation / 100.0, settings.scenario_timeout_hours * 3600.0)


def _start(order: Order) -> Response:
    """Start ``order`` on the live market: 201 with the scenario and its timeline."""
    try:
        scenario = start_order(order, context().scenarios)
    except TooManyScenarios as error:
        raise ApiError(429, "too_many_scenarios", str(error)) from None
    except ScenariosElsewhere as error:
        raise ApiError(409, "scenarios_elsewhere", str(error)) from None
    return json_response(scenario_view(scenario, trio.current_time()), 201)


def _crashable() -> list[str]:
    """A market crash's default symbols: every one but the stablecoins (OU models)."""
    market = context().market
    return [key for key in market.symbols if market.actor(key).model.kind != "ou"]


def _route(path: str, body_type: type[BaseModel], make: Callable[..., Order]) -> None:
    """``POST /chaos/<path>``: validate the body, make its order, start it."""

    async def start(data: BaseModel) -> Response:
        extra = (_crashable(),) if path == "market-crash" else ()
        try:
            order = make(data, _key, _limits(), *extra)
        except FieldError as error:
            raise invalid_field(error.field, error.message) from None
        return _start(order)

    start.__name__ = path.replace("-", "_")
    start.__doc__ = make.__doc__
    blueprint.post(f"/{path}")(validate_request(body_type)(start))


for _path, (_body, _make) in ORDERS.items():
    _route(_path, _body, _make)


@blueprint.get("/schema")
async def schema() -> Response:
    """Every scenario kind's route and body JSON Schema, and the settings' bounds."""
    return json_response(chaos_schema(_limits(), context().market.symbols))


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
    try:
        keys = [_key("symbol", data.symbol)] if data.symbol is not None else market.symbols
    except FieldError as error:
        raise invalid_field(error.field, error.message) from None
    reset = []
    for key in keys:
        breaker = market.actor(key).breaker
        if breaker is not None and breaker.open:
            breaker.reset()
            reset.append(key)
    return json_response({"reset": reset, "halted_symbols": market.halted()})
