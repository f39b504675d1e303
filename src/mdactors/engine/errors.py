"""The engine's errors, and the table each protocol keeps to translate them.

Four engine errors reach the protocols: a stream ended or refused by the
drain (:class:`StreamClosed`), the process-wide stream limit
(:class:`TooManyStreams`), a malformed symbol (:class:`SymbolError`) and a
well-formed one this market does not simulate (:class:`UnknownSymbol`).
Every protocol says each of them its own way (an HTTP status, a gRPC status,
a WebSocket error message or close code, a Binance ``code``), in one
:class:`ErrorTable` next to its codec, so no handler words them itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from mdactors.domain.symbols import SymbolError
from mdactors.engine.market import UnknownSymbol
from mdactors.engine.subscription import StreamClosed, TooManyStreams

__all__ = [
    "ENGINE_ERRORS",
    "ErrorTable",
    "StreamClosed",
    "SymbolError",
    "TooManyStreams",
    "UnknownSymbol",
]

P = TypeVar("P")

ENGINE_ERRORS: tuple[type[Exception], ...] = (
    StreamClosed,
    TooManyStreams,
    SymbolError,
    UnknownSymbol,
)


class ErrorTable(Generic[P]):
    """One protocol's translation of every engine error into its own error ``P``.

    Built from ``{engine error type: make(error) -> P}``; a table that leaves one
    of :data:`ENGINE_ERRORS` out is refused when it is built (at import).
    """

    def __init__(self, protocol: str, rows: Mapping[type[Exception], Callable[[Any], P]]) -> None:
        missing = [kind.__name__ for kind in ENGINE_ERRORS if kind not in rows]
        if missing:
            raise TypeError(f"the {protocol} error table does not say {', '.join(missing)}")
        self.protocol = protocol
        self._rows = dict(rows)

    def __call__(self, error: Exception) -> P:
        """``error`` in this protocol's words; ``TypeError`` when it is no engine error."""
        for kind in type(error).__mro__:
            make = self._rows.get(kind)
            if make is not None:
                return make(error)
        raise TypeError(f"{type(error).__name__} is not an engine error")
