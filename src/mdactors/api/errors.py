"""The HTTP API's one error shape: ``{"error": code, "message": text, ...}``."""

from __future__ import annotations

from typing import Any

__all__ = ["ApiError", "invalid_parameter"]


class ApiError(Exception):
    """An error answered with ``status`` and a JSON body naming what went wrong."""

    def __init__(self, status: int, error: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return {"error": self.error, "message": self.message, **self.details}


def invalid_parameter(name: str, message: str) -> ApiError:
    """A 400 naming the query parameter at fault."""
    return ApiError(400, "invalid_parameter", f"{name}: {message}", parameter=name)
