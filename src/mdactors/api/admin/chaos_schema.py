"""The chaos API described as data: every scenario kind's route and JSON Schema.

``GET /chaos/schema`` answers :func:`chaos_schema`: one entry per row of
:data:`~mdactors.api.admin.chaos_orders.ORDERS` (route, method, title and the
body's JSON Schema as pydantic generates it from
:mod:`mdactors.api.admin.chaos_bodies`), the breaker reset's body, and the bounds
that depend on the settings (``MAX_PRICE_DEVIATION``,
``SCENARIO_TIMEOUT_HOURS``), which no static schema can carry. Clients (the
console's forms) are built from it, so a kind added to the table appears
without client code; what the schema cannot say is checked by the routes
and answered with a 422 naming the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from mdactors.api.admin.chaos_bodies import BreakerResetBody
from mdactors.api.admin.chaos_orders import ORDERS, Limits

__all__ = ["chaos_schema"]

_PREFIX = "/chaos"


def _entry(path: str, body: type[BaseModel]) -> dict[str, Any]:
    return {
        "kind": path,
        "title": path.replace("-", " ").capitalize(),
        "method": "POST",
        "path": f"{_PREFIX}/{path}",
        "body": body.model_json_schema(),
    }


def chaos_schema(limits: Limits, symbols: Sequence[str]) -> dict[str, Any]:
    """Routes and body schemas of the chaos API under ``limits``, for ``symbols``."""
    return {
        "kinds": [_entry(path, body) for path, (body, _make) in ORDERS.items()],
        "breaker_reset": _entry("circuit-breaker/reset", BreakerResetBody),
        "active": {"method": "GET", "path": f"{_PREFIX}/active-scenarios"},
        "stop": {"method": "DELETE", "path": f"{_PREFIX}/stop-scenario/{{id}}"},
        "limits": {
            "max_price_deviation": limits.max_move,
            "max_seconds": limits.max_seconds,
        },
        "symbols": list(symbols),
    }
