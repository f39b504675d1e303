"""gRPC status codes and the error every RPC front end turns into its wire's status.

Apart from :mod:`mdactors.api.rpc` so the modules that implement single RPCs
(e.g. :mod:`mdactors.api.simulation`) can raise it without importing the
service core that delegates to them. :mod:`mdactors.api.rpc` re-exports them.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Code", "RpcError", "draining_error"]


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
