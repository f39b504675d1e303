"""One table per protocol says each engine error in that protocol's words."""

from __future__ import annotations

import pytest

from mdactors.api.binance.protocol import BINANCE_WS_ERRORS
from mdactors.api.http.errors import HTTP_ERRORS
from mdactors.api.rpc.status import RPC_ERRORS, Code
from mdactors.api.ws.protocol import WS_ERRORS
from mdactors.engine.errors import (
    ErrorTable,
    StreamClosed,
    SymbolError,
    TooManyStreams,
    UnknownSymbol,
)

pytestmark = pytest.mark.timeout(10)

LIMIT = TooManyStreams("stream limit of 2 reached")
MALFORMED = SymbolError("cannot read 'B T C' as a symbol")


def test_a_table_that_leaves_an_engine_error_out_is_refused() -> None:
    with pytest.raises(TypeError, match="UnknownSymbol"):
        ErrorTable("partial", {StreamClosed: str, TooManyStreams: str, SymbolError: str})


def test_a_subclass_is_said_as_its_engine_error_and_others_are_refused() -> None:
    class Narrower(TooManyStreams):
        pass

    assert RPC_ERRORS(Narrower("x")).code is Code.RESOURCE_EXHAUSTED
    with pytest.raises(TypeError, match="KeyError"):
        RPC_ERRORS(KeyError("x"))


def test_rpc_statuses() -> None:
    said = {kind: RPC_ERRORS(error) for kind, error in _errors().items()}
    assert said[StreamClosed].code is Code.UNAVAILABLE
    assert "shutting down" in said[StreamClosed].message
    assert said[TooManyStreams].code is Code.RESOURCE_EXHAUSTED
    assert said[TooManyStreams].message == f"{LIMIT}; retry later"
    assert said[SymbolError].code is Code.INVALID_ARGUMENT
    assert said[SymbolError].message == str(MALFORMED)
    assert said[UnknownSymbol].code is Code.NOT_FOUND


def test_http_answers() -> None:
    said = {
        kind: HTTP_ERRORS(error) for kind, error in _errors().items() if kind is not UnknownSymbol
    }
    assert (said[StreamClosed].status, said[StreamClosed].error) == (503, "shutting_down")
    assert (said[TooManyStreams].status, said[TooManyStreams].error) == (503, "too_many_streams")
    assert said[TooManyStreams].message == str(LIMIT)
    assert (said[SymbolError].status, said[SymbolError].error) == (400, "invalid_symbol")
    # UnknownSymbol lists the app's symbols: asserted through the app in test_http_api.


def test_websocket_messages() -> None:
    said = {kind: WS_ERRORS(error) for kind, error in _errors().items()}
    assert said[StreamClosed].message == "server shutting down"
    assert said[TooManyStreams].code == "too_many_streams"
    assert said[SymbolError].code == "invalid_symbol"
    assert (said[UnknownSymbol].code, said[UnknownSymbol].details) == (
        "unknown_symbol",
        {"symbol": "DOGE/EUR"},
    )


def test_binance_replies() -> None:
    said = {kind: BINANCE_WS_ERRORS(error) for kind, error in _errors().items()}
    assert said[StreamClosed].msg == "server shutting down"
    assert said[TooManyStreams].msg == f"Invalid request: {LIMIT}; retry later"
    assert {error.code for error in said.values()} == {2}


def _errors() -> dict[type[Exception], Exception]:
    return {
        StreamClosed: StreamClosed(),
        TooManyStreams: LIMIT,
        SymbolError: MALFORMED,
        UnknownSymbol: UnknownSymbol("DOGE/EUR"),
    }
