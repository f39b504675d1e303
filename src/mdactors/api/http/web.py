"""Helpers shared by the HTTP blueprints: the request's context, JSON responses,
and reading symbols and timestamps from requests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from quart import Response, current_app

from mdactors.api.codec import dumps
from mdactors.api.context import ApiContext
from mdactors.api.http.errors import invalid_parameter

__all__ = ["context", "json_response", "parse_time_ms"]


def context() -> ApiContext:
    """The :class:`ApiContext` of the app serving the current request."""
    return current_app.extensions["mdactors"]


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response (NaN and infinities as ``null``)."""
    return Response(dumps(payload), status=status, headers=headers, content_type="application/json")


def parse_time_ms(name: str, text: str | None) -> int | None:
    """An RFC 3339 time or integer epoch milliseconds, as epoch milliseconds."""
    if text is None or text == "":
        return None
    text = text.strip()
    if text.isascii() and text.isdigit():
        value = int(text)
        if value > 10**15:
            raise invalid_parameter(name, "epoch milliseconds out of range")
        return value
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise invalid_parameter(
            name, f"expected RFC 3339 time or epoch milliseconds, got {text[:40]!r}"
        ) from None
    if moment.tzinfo is None:
        raise invalid_parameter(name, "time must carry a UTC offset or Z")
    return int(moment.timestamp() * 1000)
