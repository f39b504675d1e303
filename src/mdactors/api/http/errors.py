"""The HTTP API's one error shape: ``{"error": code, "message": text, ...}``."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

__all__ = ["ApiError", "invalid_parameter", "validation_message"]


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
