"""Binance's WebSocket market-stream protocol, sans I/O.

Stream names (``btcusd@trade``, ``btcusd@depth@100ms``, ``btcusd@kline_1m``,
``!miniTicker@arr``, ...), connection paths (``/ws/<stream>``,
``/stream?streams=a/b``), the control messages ``SUBSCRIBE``,
``UNSUBSCRIBE``, ``LIST_SUBSCRIPTIONS``, ``SET_PROPERTY`` and
``GET_PROPERTY`` with their ``{"result": ..., "id": ...}`` replies, and
errors as ``{"error": {"code": ..., "msg": ...}, "id": ...}`` (code 0
unknown property, 1 invalid value type, 2 invalid request, 3 invalid JSON).
:mod:`mdactors.api.binance.streams` feeds frames in and sends what comes out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from mdactors.api.binance.symbols import BinanceMarket, BinanceSymbols
from mdactors.api.codec import dumps
from mdactors.domain.klines import KLINE_INTERVALS
from mdactors.engine.errors import (
    ErrorTable,
    StreamClosed,
    SymbolError,
    TooManyStreams,
    UnknownSymbol,
)

__all__ = [
    "ALL_STREAMS_KEY",
    "BINANCE_WS_ERRORS",
    "FUTURES",
    "FUTURES_KEY",
    "SPOT",
    "Control",
    "SessionStreams",
    "StreamSpec",
    "Venue",
    "WsError",
    "decode_control",
    "error_reply",
    "is_binance_message",
    "parse_path",
    "parse_stream",
    "result_reply",
]

ALL_STREAMS_KEY = "!arr"
"""The subscription key of the all-market ``!ticker@arr`` / ``!miniTicker@arr`` streams."""
MAX_STREAM_NAME = 64
MAX_ID = 2**63
METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_PARTIAL_LEVELS = (5, 10, 20)

RequestId = int | str | None


class WsError(Exception):
    """A request Binance would refuse: answered with an error reply, connection kept."""

    def __init__(self, code: int, msg: str, request_id: RequestId = None) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.request_id = request_id


BINANCE_WS_ERRORS: ErrorTable[WsError] = ErrorTable(
    "Binance WebSocket",
    {
        StreamClosed: lambda _: WsError(2, "server shutting down"),
        TooManyStreams: lambda error: WsError(2, f"Invalid request: {error}; retry later"),
        SymbolError: lambda error: WsError(2, f"Invalid request: {error}"),
        UnknownSymbol: lambda error: WsError(2, f"Invalid request: {error}"),
    },
)
"""The error reply of each engine error on a Binance stream; a drain is said as the
reason of a 1001 close instead."""


FUTURES_KEY = "!futures"
"""The subscription key of the futures streams fed once a second (mark price, liquidations)."""


@dataclass(frozen=True, slots=True)
class Venue:
    """What one venue's stream names and connection paths may say.

    ``tick_kinds`` are pushed on every tick; ``once_a_second`` are the
    per-symbol streams of the futures feed (``kind``, ``speed_ms``), and
    ``all_market`` the ``!...`` streams (``kind``, ``speed_ms``, their key);
    ``depth_speeds`` map a depth suffix (``""``, ``"100ms"``...) to its push
    interval. ``raw_path`` and ``combined_path`` are the connection paths.
    """

    name: str
    tick_kinds: tuple[str, ...]
    depth_speeds: dict[str, int]
    all_market: dict[str, tuple[str, int, str]]
    once_a_second: dict[str, tuple[str, int]]
    raw_path: str
    combined_path: str


SPOT = Venue(
    "spot",
    ("trade", "aggTrade", "ticker", "miniTicker", "bookTicker"),
    {"": 1000, "100ms": 100},
    {
        "!ticker@arr": ("allTickers", 0, ALL_STREAMS_KEY),
        "!miniTicker@arr": ("allMiniTickers", 0, ALL_STREAMS_KEY),
    },
    {},
    "/ws",
    "/stream",
)
FUTURES = Venue(
    "futures",
    ("trade", "aggTrade", "ticker", "miniTicker", "bookTicker"),
    {"": 250, "100ms": 100, "500ms": 500},
    {
        "!markPrice@arr": ("allMarkPrice", 3000, FUTURES_KEY),
        "!markPrice@arr@1s": ("allMarkPrice", 1000, FUTURES_KEY),
        "!forceOrder@arr": ("allForceOrder", 0, FUTURES_KEY),
    },
    {
        "markPrice": ("markPrice", 3000),
        "markPrice@1s": ("markPrice", 1000),
        "forceOrder": ("forceOrder", 0),
    },
    "/fws",
    "/fstream",
)
"""Binance USD-M futures: served on ``/fws`` and ``/fstream`` of the WebSocket port."""


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One market stream. ``market`` is ``None`` for the all-market ``!...`` streams.

    ``kind`` is ``trade``, ``aggTrade``, ``ticker``, ``miniTicker``,
    ``bookTicker``, ``depth`` (``levels`` 0 = diffs, else a partial book),
    ``kline``, ``allTickers``/``allMiniTickers`` (spot), ``markPrice``,
    ``forceOrder``, ``allMarkPrice``, ``allForceOrder`` (futures);
    ``speed_ms`` is the depth or mark price push interval. ``feed`` is the
    subscription key when it is not the market's own (:data:`ALL_STREAMS_KEY`,
    :data:`FUTURES_KEY`).
    """

    name: str
    kind: str
    market: BinanceMarket | None = None
    interval: str = ""
    levels: int = 0
    speed_ms: int = 0
    feed: str = ""

    @property
    def key(self) -> str:
        """The subscription key whose items feed this stream."""
        if self.feed:
            return self.feed
        return self.market.key if self.market is not None else ALL_STREAMS_KEY


def _unknown_stream(name: str) -> WsError:
    return WsError(2, f"Invalid request: unknown stream {name[:MAX_STREAM_NAME]!r}")


def parse_stream(name: object, symbols: BinanceSymbols, venue: Venue = SPOT) -> StreamSpec:
    """Read a stream name of ``venue``; :class:`WsError` (code 2) for anything that is
    not one of its streams."""
    if not isinstance(name, str):
        raise WsError(2, "Invalid request: stream names must be strings")
    if len(name) > MAX_STREAM_NAME:
        raise _unknown_stream(name)
    if name in venue.all_market:
        kind, speed_ms, feed = venue.all_market[name]
        return StreamSpec(name, kind, speed_ms=speed_ms, feed=feed)
    symbol, sep, rest = name.partition("@")
    market = symbols.get(symbol)
    if not sep or market is None or symbol != symbol.lower():
        raise _unknown_stream(name)
    canonical = f"{market.stream_name}@{rest}"
    if rest in venue.tick_kinds:
        return StreamSpec(canonical, rest, market)
    if rest in venue.once_a_second:
        kind, speed_ms = venue.once_a_second[rest]
        return StreamSpec(canonical, kind, market, speed_ms=speed_ms, feed=FUTURES_KEY)
    if rest.startswith("kline_"):
        interval = rest.removeprefix("kline_")
        if interval not in KLINE_INTERVALS:
            raise WsError(2, f"Invalid request: unsupported kline interval {interval[:8]!r}")
        return StreamSpec(canonical, "kline", market, interval=interval)
    if rest.startswith("depth"):
        body, _, speed = rest.removeprefix("depth").partition("@")
        if speed not in venue.depth_speeds:
            raise _unknown_stream(name)
        levels = int(body) if body.isascii() and body.isdigit() else -1 if body else 0
        if levels != 0 and levels not in _PARTIAL_LEVELS:
            raise _unknown_stream(name)
        speed_ms = venue.depth_speeds[speed]
        return StreamSpec(canonical, "depth", market, levels=levels, speed_ms=speed_ms)
    raise _unknown_stream(name)


# --------------------------------------------------------------------------- paths


def parse_path(path: str, max_streams: int, venue: Venue = SPOT) -> tuple[bool, list[str]]:
    """``(combined, stream names)`` of a connection path of ``venue``.

    ``/ws`` and ``/ws/<name>[/<name>...]`` are raw (a segment that is not a
    stream name, such as ccxt's ``/ws/0``, is dropped by the caller);
    ``/stream?streams=a/b`` is combined (futures: ``/fws``, ``/fstream``).
    More than ``max_streams`` names raise :class:`WsError`.
    """
    route, _, query = path.partition("?")
    if route.rstrip("/") == venue.combined_path:
        values = parse_qs(query).get("streams", [])
        names = [name for value in values for name in value.split("/") if name]
        combined = True
    else:
        names = [name for name in route.removeprefix(venue.raw_path).split("/") if name]
        combined = False
    if len(names) > max_streams:
        raise WsError(2, f"Invalid request: at most {max_streams} streams per connection")
    return combined, names


# --------------------------------------------------------------------------- control messages


@dataclass(frozen=True, slots=True)
class Control:
    """One control message: ``method``, its ``params`` and the request ``id``."""

    method: str
    params: list[Any]
    id: RequestId


def is_binance_message(data: str | bytes) -> bool:
    """Whether a first frame on ``/`` or ``/ws`` is a Binance control message (has ``method``)."""
    if isinstance(data, bytes) or '"method"' not in data:
        return False
    try:
        payload = json.loads(data)
    except ValueError:
        return False
    return isinstance(payload, dict) and "method" in payload


def _request_id(payload: dict[str, Any]) -> RequestId:
    value = payload.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise WsError(1, "Invalid value type: id must be an integer or a string")
    if isinstance(value, int) and not -MAX_ID < value < MAX_ID:
        raise WsError(1, "Invalid value type: id out of range")
    if isinstance(value, str) and len(value) > 64:
        raise WsError(1, "Invalid value type: id longer than 64 characters")
    return value


def decode_control(data: str | bytes, max_bytes: int) -> Control:
    """Parse one client frame; :class:`WsError` carrying the request id for any mistake."""
    if isinstance(data, bytes):
        raise WsError(3, "Invalid JSON: binary frames are not supported, send text")
    if len(data) > max_bytes:
        raise WsError(3, f"Invalid JSON: message of {len(data)} characters exceeds {max_bytes}")
    try:
        payload = json.loads(data)
    except ValueError as error:
        raise WsError(3, f"Invalid JSON: {str(error)[:100]}") from None
    if not isinstance(payload, dict):
        raise WsError(3, "Invalid JSON: expected an object with method, params and id")
    request_id = _request_id(payload)
    method = payload.get("method")
    if method not in METHODS:
        shown = method[:40] if isinstance(method, str) else method
        raise WsError(
            2,
            f"Invalid request: unknown method {shown!r}, expected one of {', '.join(METHODS)}",
            request_id,
        )
    params = payload.get("params", [])
    if not isinstance(params, list):
        raise WsError(2, "Invalid request: params must be an array", request_id)
    return Control(method, params, request_id)


def result_reply(result: Any, request_id: RequestId) -> bytes:
    """``{"result": ..., "id": ...}``."""
    return dumps({"result": result, "id": request_id})


def error_reply(error: WsError) -> bytes:
    """``{"error": {"code": ..., "msg": ...}, "id": ...}``."""
    return dumps({"error": {"code": error.code, "msg": error.msg}, "id": error.request_id})


# --------------------------------------------------------------------------- session state


@dataclass
class SessionStreams:
    """What one connection follows, in subscription order, at most ``max_streams``.

    ``by_key`` groups the streams by subscription key, as the writer reads
    them: per symbol (or :data:`ALL_STREAMS_KEY`), the specs to render.
    """

    max_streams: int
    combined: bool = False
    venue: Venue = SPOT
    streams: dict[str, StreamSpec] = field(default_factory=dict)
    by_key: dict[str, list[StreamSpec]] = field(default_factory=dict)

    def add(self, specs: list[StreamSpec], request_id: RequestId = None) -> list[StreamSpec]:
        """Follow ``specs`` (all or none); return those that are new."""
        new = [spec for spec in dict.fromkeys(specs) if spec.name not in self.streams]
        if len(self.streams) + len(new) > self.max_streams:
            raise WsError(
                2,
                f"Invalid request: a connection may follow at most {self.max_streams} streams",
                request_id,
            )
        for spec in new:
            self.streams[spec.name] = spec
            self.by_key.setdefault(spec.key, []).append(spec)
        return new

    def remove(self, names: list[str]) -> list[StreamSpec]:
        """Stop following the named streams; return those that were followed."""
        gone = [self.streams.pop(name) for name in dict.fromkeys(names) if name in self.streams]
        for spec in gone:
            specs = self.by_key[spec.key]
            specs.remove(spec)
            if not specs:
                del self.by_key[spec.key]
        return gone

    def handle(self, control: Control, symbols: BinanceSymbols) -> tuple[bytes, list, list]:
        """Apply ``control``: ``(reply, streams added, streams removed)``."""
        request_id = control.id
        if control.method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if len(control.params) > self.max_streams:
                raise WsError(
                    2,
                    f"Invalid request: at most {self.max_streams} streams per message",
                    request_id,
                )
            try:
                specs = [parse_stream(name, symbols, self.venue) for name in control.params]
            except WsError as error:
                error.request_id = request_id
                raise
            if control.method == "SUBSCRIBE":
                return result_reply(None, request_id), self.add(specs, request_id), []
            return result_reply(None, request_id), [], self.remove([s.name for s in specs])
        if control.method == "LIST_SUBSCRIPTIONS":
            return result_reply(list(self.streams), request_id), [], []
        prop = control.params[0] if control.params else None
        if prop != "combined":
            raise WsError(0, "Unknown property", request_id)
        if control.method == "GET_PROPERTY":
            return result_reply(self.combined, request_id), [], []
        value = control.params[1] if len(control.params) > 1 else None
        if not isinstance(value, bool):
            raise WsError(1, "Invalid value type: expected Boolean", request_id)
        self.combined = value
        return result_reply(None, request_id), [], []
