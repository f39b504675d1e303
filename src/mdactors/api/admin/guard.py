"""What the chaos and debug blueprints share: bearer-token guard, 422 errors, scenario views.

Both blueprints are registered (:func:`register_admin`) only when
``CHAOS_ENABLED`` is true, so with it false every route under ``/chaos`` and
``/debug`` is a plain 404. When ``ADMIN_TOKEN`` is set, every request under
those prefixes, routed or not, needs ``Authorization: Bearer <token>``
(compared in constant time; the token is never logged or echoed). The admin
routes are left out of the public OpenAPI document.
"""

from __future__ import annotations

import hmac
from typing import Any

from quart import Blueprint, Quart, Response, request
from quart_schema import RequestSchemaValidationError, hide

from mdactors.api.codec import rfc3339
from mdactors.api.http.errors import ApiError, validation_message
from mdactors.api.http.web import context, json_response
from mdactors.domain.overlay import Scenario

__all__ = ["admin_blueprint", "invalid_field", "register_admin", "scenario_view"]


def invalid_field(name: str, message: str) -> ApiError:
    """A 422 naming the body field at fault."""
    return ApiError(422, "invalid_field", f"{name}: {message}", field=name)


async def _require_admin() -> None:
    token = context().settings.admin_token
    if not token:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise ApiError(
            401,
            "unauthorized",
            "a valid bearer token is required",
            headers={"WWW-Authenticate": 'Bearer realm="mdactors-admin"'},
        )


async def _invalid_body(error: RequestSchemaValidationError) -> Response:
    name, message = validation_message(error, default="body")
    return json_response(invalid_field(name, message).body(), 422)


def admin_blueprint(name: str, prefix: str) -> Blueprint:
    """A blueprint under ``prefix`` with 422 body errors; :func:`register_admin` mounts
    it behind the admin token."""
    blueprint = Blueprint(name, __name__, url_prefix=prefix)
    blueprint.register_error_handler(RequestSchemaValidationError, _invalid_body)
    return blueprint


def register_admin(app: Quart, *blueprints: Blueprint) -> None:
    """Mount admin blueprints: the token guards their whole prefixes; OpenAPI omits them.

    The guard is app-level, not per blueprint: a blueprint's guard runs only
    for requests that matched one of its routes, so an unknown path (or a
    wrong method) under ``/chaos`` would answer 404 (405) without a token
    while a known one answers 401 — enough to map the admin API. This one
    runs before routing errors are raised (and after the CORS preflight
    answer), so without a valid token every path under the prefixes is a
    401; with one, unknown paths are 404.
    """
    prefixes = []
    for blueprint in blueprints:
        if not blueprint.url_prefix:
            raise ValueError(f"admin blueprint {blueprint.name!r} needs a url_prefix")
        prefixes.append(blueprint.url_prefix.rstrip("/"))
        app.register_blueprint(blueprint)
    names = {blueprint.name for blueprint in blueprints}
    for endpoint, view in app.view_functions.items():
        if endpoint.partition(".")[0] in names:
            hide(view)

    @app.before_request
    async def guard_admin_prefixes() -> None:
        path = request.path
        if any(path == prefix or path.startswith(prefix + "/") for prefix in prefixes):
            await _require_admin()


def _wall(scenario: Scenario, t: float) -> str:
    """RFC 3339 wall time of ``t`` on the engine clock."""
    return rfc3339(scenario.started_ns + int((t - scenario.timeline.start) * 1e9))


def scenario_view(scenario: Scenario, now: float) -> dict[str, Any]:
    """The JSON view of a scenario at ``now`` (engine clock)."""
    timeline = scenario.timeline
    phase, progress, level = scenario.status(now)
    return {
        "id": scenario.id,
        "scenario_type": scenario.kind.value,
        "symbols": list(scenario.symbols),
        "phase": phase.value,
        "progress": round(progress, 4),
        "intensity": round(level, 4),
        "stopped": timeline.stopped_at is not None,
        "started_at": _wall(scenario, timeline.start),
        "full_strength_at": _wall(scenario, timeline.start + timeline.onset),
        "recovery_starts_at": _wall(scenario, timeline.recovery_start),
        "ends_at": _wall(scenario, timeline.end),
        "parameters": scenario.params,
    }
