"""gRPC status codes and the error every RPC front end turns into its wire's status.

Apart from :mod:`mdactors.api.rpc.service` so the modules that implement single RPCs
(e.g. :mod:`mdactors.api.rpc.simulation`) can raise it without importing the
service core that delegates to them. :mod:`mdactors.api.rpc.service` re-exports them.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar

from mdactors.domain.symbols import SymbolError, normalize_symbol
from mdactors.engine.errors import ErrorTable, StreamClosed, TooManyStreams, UnknownSymbol

E = TypeVar("E", bound=IntEnum)

__all__ = [
    "RPC_ERRORS",
    "Code",
    "RpcError",
    "draining_error",
    "invalid_argument",
    "request_enum",
    "request_symbol",
]


class Code(IntEnum):
    """gRPC status codes (the Connect protocol uses the same set, by name)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    @property
    def connect_name(self) -> str:
        """The Connect protocol's name of the code (``invalid_argument``, ``canceled``)."""
        return "canceled" if self is Code.CANCELLED else self.name.lower()


class RpcError(Exception):
    """An RPC fails with ``code`` and a message meant for the caller."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


def draining_error() -> RpcError:
    """The status of a stream ended, or refused, by the drain."""
    return RpcError(Code.UNAVAILABLE, "server is shutting down; reconnect to another instance")


def invalid_argument(message: str) -> RpcError:
    """``INVALID_ARGUMENT`` with ``message``."""
    return RpcError(Code.INVALID_ARGUMENT, message)


RPC_ERRORS: ErrorTable[RpcError] = ErrorTable(
    "gRPC/Connect",
    {
        StreamClosed: lambda _: draining_error(),
        TooManyStreams: lambda error: RpcError(Code.RESOURCE_EXHAUSTED, f"{error}; retry later"),
        SymbolError: lambda error: invalid_argument(str(error)),
        UnknownSymbol: lambda error: RpcError(Code.NOT_FOUND, str(error)),
    },
)
"""The status of each engine error, for gRPC and Connect alike."""


def request_symbol(raw: str) -> str:
    """The canonical key of a request's symbol; ``INVALID_ARGUMENT`` when malformed."""
    try:
        return normalize_symbol(raw)
    except SymbolError as error:
        raise RPC_ERRORS(error) from None


def request_enum(enum: type[E], value: int, field: str) -> E:
    """``value`` as a member of ``enum``; ``INVALID_ARGUMENT`` naming ``field`` otherwise."""
    try:
        return enum(value)
    except ValueError:
        names = ", ".join(member.name for member in enum)
        raise invalid_argument(f"unknown {field} {value}; expected one of {names}") from None
