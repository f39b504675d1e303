"""The HTTP API's one error shape: ``{"error": code, "message": text, ...}``."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from quart import current_app

from mdactors.engine.errors import (
    ErrorTable,
    StreamClosed,
    SymbolError,
    TooManyStreams,
    UnknownSymbol,
)

__all__ = ["HTTP_ERRORS", "ApiError", "invalid_parameter", "validation_message"]


class ApiError(Exception):
    """An error answered with ``status`` and a JSON body naming what went wrong."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}
        self.details = details

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return {"error": self.error, "message": self.message, **self.details}


def validation_message(error: Exception, default: str) -> tuple[str, str]:
    """``(field, message)`` of a request-validation failure (``default`` when unnamed)."""
    cause = getattr(error, "validation_error", None)
    if isinstance(cause, ValidationError) and cause.errors():
        first = cause.errors()[0]
        name = ".".join(str(part) for part in first.get("loc", ())) or default
        return name, str(first.get("msg", "invalid value"))
    return default, str(cause or error)


def invalid_parameter(name: str, message: str) -> ApiError:
    """A 400 naming the query parameter at fault."""
    return ApiError(400, "invalid_parameter", f"{name}: {message}", parameter=name)


def _unknown_symbol(error: UnknownSymbol) -> ApiError:
    known = ", ".join(current_app.extensions["mdactors"].market.symbols)
    return ApiError(
        404, "unknown_symbol", f"unknown symbol {error.key!r}; known: {known}", symbol=error.key
    )


HTTP_ERRORS: ErrorTable[ApiError] = ErrorTable(
    "HTTP",
    {
        StreamClosed: lambda _: ApiError(503, "shutting_down", "server shutting down"),
        TooManyStreams: lambda error: ApiError(503, "too_many_streams", str(error)),
        SymbolError: lambda error: ApiError(400, "invalid_symbol", str(error)),
        UnknownSymbol: _unknown_symbol,
    },
)
"""The answer to each engine error on the HTTP port (REST, the UI API, SSE); an SSE
stream that is already open says it in-band (``error``, or ``end`` for the drain)."""
