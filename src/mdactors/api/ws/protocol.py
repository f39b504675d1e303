"""The WebSocket JSON protocol, sans I/O: parse client messages, keep a session's
subscription table, encode server messages.

Nothing here touches trio or a socket; :mod:`mdactors.api.ws.server` feeds text in and
sends the bytes out. Every message is a JSON object with a ``type``; see
``docs/websocket.md`` for the full protocol with examples.

Encode once: a tick's ``ticker`` and ``trades`` update messages are cached in
``Tick.wire`` (keys ``ws:ticker`` and ``ws:trades``), so every session of the
process sends the same bytes. A client that is behind gets several messages
in one ``batch`` frame (:func:`batch_frame`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mdactors.api.codec import dumps, perpetual_fields, tick_quote_fields
from mdactors.domain.book import OrderBook
from mdactors.domain.candles import INTERVALS, Candle
from mdactors.domain.tick import Tick, Trade
from mdactors.engine.errors import (
    ErrorTable,
    StreamClosed,
    SymbolError,
    TooManyStreams,
    UnknownSymbol,
)

__all__ = [
    "BOOK_DEFAULT_DEPTH",
    "BOOK_MAX_DEPTH",
    "MAX_CHANNELS_PER_MESSAGE",
    "WS_ERRORS",
    "Channel",
    "ClientMessage",
    "ListRequest",
    "Ping",
    "ProtocolError",
    "SessionState",
    "Subscribe",
    "SubscribeResult",
    "Unsubscribe",
    "batch_frame",
    "book_message",
    "candle_message",
    "decode_client_message",
    "error_message",
    "funding_snapshot",
    "funding_update",
    "heartbeat_message",
    "pong_message",
    "subscribed_message",
    "subscriptions_message",
    "ticker_snapshot",
    "ticker_update",
    "trades_snapshot",
    "trades_update",
    "unsubscribed_message",
    "welcome_message",
]

BOOK_DEFAULT_DEPTH = 10
BOOK_MAX_DEPTH = 100
MAX_CHANNELS_PER_MESSAGE = 16
MAX_ID_LENGTH = 64
CHANNEL_KINDS = ("ticker", "trades", "candles", "book", "funding")

RequestId = str | int | None


class ProtocolError(Exception):
    """A client mistake, answered with an ``error`` message; the connection stays open.

    ``code`` is a stable machine-readable name (``invalid_json``,
    ``unknown_symbol``, ...); ``message`` says what to fix.
    """

    def __init__(self, code: str, message: str, *, request_id: RequestId = None, **details: Any):
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.details = details


WS_ERRORS: ErrorTable[ProtocolError] = ErrorTable(
    "WebSocket",
    {
        StreamClosed: lambda _: ProtocolError("shutting_down", "server shutting down"),
        TooManyStreams: lambda error: ProtocolError("too_many_streams", f"{error}; retry later"),
        SymbolError: lambda error: ProtocolError("invalid_symbol", str(error)),
        UnknownSymbol: lambda error: ProtocolError(
            "unknown_symbol", f"symbol {error.key!r} is not simulated here", symbol=error.key
        ),
    },
)
"""The error message of each engine error on the WebSocket port; a drain
(``shutting_down``) is said as the reason of a 1001 close instead."""


# --------------------------------------------------------------------------- channels


@dataclass(frozen=True, slots=True)
class Channel:
    """One data channel of a symbol: ``ticker``, ``trades``, ``candles:<interval>``,
    ``book``, ``book:<depth>`` or (perpetuals) ``funding``. ``name`` is its canonical
    spelling."""

    kind: str
    interval: str = ""
    depth: int = 0

    @property
    def name(self) -> str:
        """The canonical channel name, as it appears in messages."""
        if self.kind == "candles":
            return f"candles:{self.interval}"
        if self.kind == "book" and self.depth != BOOK_DEFAULT_DEPTH:
            return f"book:{self.depth}"
        return self.kind

    @classmethod
    def parse(cls, text: object) -> Channel:
        """Read a channel name; :class:`ProtocolError` ``bad_channel`` if it is not one."""
        if not isinstance(text, str):
            raise ProtocolError("bad_channel", "channels must be strings")
        kind, sep, arg = text.strip().lower().partition(":")
        shown = text[:40]
        if kind in ("ticker", "trades", "funding") and not sep:
            return cls(kind)
        if kind == "candles":
            if arg not in INTERVALS:
                raise ProtocolError(
                    "bad_interval",
                    f"channel {shown!r}: expected candles:<interval> with interval one of "
                    f"{', '.join(INTERVALS)}",
                    channel=shown,
                )
            return cls("candles", interval=arg)
        if kind == "book":
            if not sep:
                return cls("book", depth=BOOK_DEFAULT_DEPTH)
            # isascii: "²".isdigit() is true but int("²") fails
            if not (arg.isascii() and arg.isdigit()) or not 1 <= int(arg) <= BOOK_MAX_DEPTH:
                raise ProtocolError(
                    "bad_channel",
                    f"channel {shown!r}: book depth must be an integer within 1..{BOOK_MAX_DEPTH}",
                    channel=shown,
                )
            return cls("book", depth=int(arg))
        raise ProtocolError(
            "bad_channel",
            f"unknown channel {shown!r}; expected ticker, trades, candles:<interval>, "
            "book[:<depth>] or funding",
            channel=shown,
        )


# --------------------------------------------------------------------------- client messages


@dataclass(frozen=True, slots=True)
class Subscribe:
    """``{"type":"subscribe","symbols":[...],"channels":[...]}`` (channels default ticker)."""

    symbols: tuple[str, ...]
    channels: tuple[Channel, ...]
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """``{"type":"unsubscribe","symbols":[...],"channels":[...]}``; no channels = all."""

    symbols: tuple[str, ...]
    channels: tuple[Channel, ...] | None
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class Ping:
    """``{"type":"ping"}`` → ``pong``."""

    id: RequestId = None


@dataclass(frozen=True, slots=True)
class ListRequest:
    """``{"type":"list"}`` → ``subscriptions`` (what this session follows)."""

    id: RequestId = None


ClientMessage = Subscribe | Unsubscribe | Ping | ListRequest


def _request_id(payload: dict[str, Any]) -> RequestId:
    value = payload.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ProtocolError("invalid_message", "id must be a string or an integer")
    if isinstance(value, str) and len(value) > MAX_ID_LENGTH:
        raise ProtocolError("invalid_message", f"id must be at most {MAX_ID_LENGTH} characters")
    if isinstance(value, int) and abs(value) >= 2**53:
        raise ProtocolError("invalid_message", "id must be within ±2^53")
    return value


def _string_list(payload: dict[str, Any], name: str, request_id: RequestId) -> list[Any]:
    value = payload.get(name)
    if not isinstance(value, list) or not value:
        raise ProtocolError(
            "invalid_message", f"{name} must be a non-empty list", request_id=request_id
        )
    return value


def _symbols(payload: dict[str, Any], max_symbols: int, request_id: RequestId) -> tuple[str, ...]:
    symbols = _string_list(payload, "symbols", request_id)
    if len(symbols) > max_symbols:
        raise ProtocolError(
            "too_many_symbols",
            f"at most {max_symbols} symbols per subscription, got {len(symbols)}",
            request_id=request_id,
        )
    if not all(isinstance(symbol, str) for symbol in symbols):
        raise ProtocolError("invalid_message", "symbols must be strings", request_id=request_id)
    return tuple(dict.fromkeys(symbols))


def _channels(payload: dict[str, Any], request_id: RequestId) -> tuple[Channel, ...]:
    names = _string_list(payload, "channels", request_id)
    if len(names) > MAX_CHANNELS_PER_MESSAGE:
        raise ProtocolError(
            "bad_channel",
            f"at most {MAX_CHANNELS_PER_MESSAGE} channels per message, got {len(names)}",
            request_id=request_id,
        )
    try:
        return tuple(dict.fromkeys(Channel.parse(name) for name in names))
    except ProtocolError as error:
        error.request_id = request_id
        raise


def decode_client_message(data: str | bytes, *, max_bytes: int, max_symbols: int) -> ClientMessage:
    """Parse one client frame into a message; :class:`ProtocolError` for any mistake.

    Binary frames, frames over ``max_bytes``, non-JSON text, non-object JSON,
    unknown types and malformed fields each get their own error code.
    """
    if isinstance(data, bytes):
        raise ProtocolError(
            "binary_not_supported", "binary frames are not supported; send JSON text frames"
        )
    if len(data) > max_bytes:
        raise ProtocolError(
            "message_too_large", f"message of {len(data)} characters exceeds {max_bytes}"
        )
    try:
        payload = json.loads(data)
    except ValueError:
        raise ProtocolError("invalid_json", "message is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ProtocolError("invalid_message", "message must be a JSON object with a type")
    request_id = _request_id(payload)
    kind = payload.get("type")
    if kind == "subscribe":
        symbols = _symbols(payload, max_symbols, request_id)
        channels = _channels(payload, request_id) if "channels" in payload else (Channel("ticker"),)
        return Subscribe(symbols, channels, request_id)
    if kind == "unsubscribe":
        symbols = _symbols(payload, max_symbols, request_id)
        unsubscribed = _channels(payload, request_id) if "channels" in payload else None
        return Unsubscribe(symbols, unsubscribed, request_id)
    if kind == "ping":
        return Ping(request_id)
    if kind == "list":
        return ListRequest(request_id)
    shown = kind[:40] if isinstance(kind, str) else kind
    raise ProtocolError(
        "unknown_type",
        f"unknown message type {shown!r}; expected subscribe, unsubscribe, ping or list",
        request_id=request_id,
    )


# --------------------------------------------------------------------------- session state


@dataclass(slots=True)
class SubscribeResult:
    """What a subscribe added: ``(symbol as sent, key, channel)`` per new channel."""

    added: list[tuple[str, str, Channel]] = field(default_factory=list)
    new_keys: list[str] = field(default_factory=list)


@dataclass
class SessionState:
    """The channels one WebSocket session follows, per symbol key.

    ``since`` holds, per ``(key, channel name)``, the sequence of the snapshot
    sent for that channel: updates at or before it are skipped, so a client
    sees its snapshot and then every later tick exactly once.
    """

    max_symbols: int
    channels: dict[str, dict[str, Channel]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    since: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        """The symbol keys with at least one channel."""
        return list(self.channels)

    def subscribe(
        self, resolved: Sequence[tuple[str, str]], channels: Iterable[Channel]
    ) -> SubscribeResult:
        """Add ``channels`` for every ``(symbol as sent, key)``; all or nothing.

        Raises ``too_many_symbols`` when the session would follow more than
        ``max_symbols`` distinct symbols.
        """
        wanted = list(dict.fromkeys(key for _, key in resolved))
        total = len(set(self.channels) | set(wanted))
        if total > self.max_symbols:
            raise ProtocolError(
                "too_many_symbols",
                f"a session may follow at most {self.max_symbols} symbols "
                f"(this would make {total})",
            )
        result = SubscribeResult()
        channel_list = list(channels)
        for alias, key in resolved:
            table = self.channels.get(key)
            if table is None:
                table = self.channels[key] = {}
                result.new_keys.append(key)
            self.aliases[key] = alias
            for channel in channel_list:
                if channel.name not in table:
                    table[channel.name] = channel
                    result.added.append((alias, key, channel))
        return result

    def unsubscribe(
        self, keys: Iterable[str], channels: Iterable[Channel] | None
    ) -> list[tuple[str, str, list[str]]]:
        """Remove channels (all when ``None``); return ``(alias, key, removed names)``."""
        names = None if channels is None else [channel.name for channel in channels]
        removed: list[tuple[str, str, list[str]]] = []
        for key in dict.fromkeys(keys):
            table = self.channels.get(key)
            if table is None:
                continue
            gone = [name for name in (list(table) if names is None else names) if name in table]
            for name in gone:
                del table[name]
                self.since.pop((key, name), None)
            alias = self.aliases.get(key, key)
            if not table:
                del self.channels[key]
                self.aliases.pop(key, None)
            if gone:
                removed.append((alias, key, gone))
        return removed

    def mark_snapshot(self, key: str, channel: Channel, seq: int) -> None:
        """Record that ``channel``'s snapshot of ``key`` was taken at ``seq``."""
        self.since[(key, channel.name)] = seq

    def wants(self, key: str, channel: Channel, seq: int) -> bool:
        """Whether the update at ``seq`` is newer than ``channel``'s snapshot."""
        return seq > self.since.get((key, channel.name), 0)

    def table(self) -> list[dict[str, Any]]:
        """The subscriptions as JSON-ready rows."""
        return [
            {"symbol": self.aliases.get(key, key), "key": key, "channels": list(table)}
            for key, table in self.channels.items()
        ]


# --------------------------------------------------------------------------- server messages


def _with_id(payload: dict[str, Any], request_id: RequestId) -> dict[str, Any]:
    if request_id is not None:
        payload["id"] = request_id
    return payload


def welcome_message(
    version: str, symbols: Sequence[str], limits: dict[str, Any], ts_ns: int
) -> bytes:
    """Sent once on connect: server version, symbols, channels and limits."""
    return dumps(
        {
            "type": "welcome",
            "server": "mdactors",
            "version": version,
            "ts": ts_ns,
            "symbols": list(symbols),
            "channels": [
                "ticker",
                "trades",
                "candles:<interval>",
                "book",
                "book:<depth>",
                "funding",
            ],
            "intervals": list(INTERVALS),
            "limits": limits,
        }
    )


def error_message(error: ProtocolError) -> bytes:
    """``{"type":"error","code":...,"message":...}`` (plus ``id`` and details)."""
    payload = {"type": "error", "code": error.code, "message": error.message, **error.details}
    return dumps(_with_id(payload, error.request_id))


def subscribed_message(result: SubscribeResult, request_id: RequestId) -> bytes:
    """Acknowledges a subscribe: the channels added, symbols echoed as sent."""
    rows: dict[str, dict[str, Any]] = {}
    for alias, key, channel in result.added:
        row = rows.setdefault(key, {"symbol": alias, "key": key, "channels": []})
        row["channels"].append(channel.name)
    return dumps(_with_id({"type": "subscribed", "subscriptions": list(rows.values())}, request_id))


def unsubscribed_message(
    removed: Sequence[tuple[str, str, list[str]]], request_id: RequestId
) -> bytes:
    """Acknowledges an unsubscribe: the channels removed."""
    rows = [{"symbol": alias, "key": key, "channels": names} for alias, key, names in removed]
    return dumps(_with_id({"type": "unsubscribed", "subscriptions": rows}, request_id))


def subscriptions_message(state: SessionState, request_id: RequestId) -> bytes:
    """Answer to ``list``."""
    return dumps(_with_id({"type": "subscriptions", "subscriptions": state.table()}, request_id))


def pong_message(request_id: RequestId, ts_ns: int) -> bytes:
    """Answer to ``ping``."""
    return dumps(_with_id({"type": "pong", "ts": ts_ns}, request_id))


def heartbeat_message(ts_ns: int) -> bytes:
    """Sent when the session has been idle for the heartbeat interval."""
    return b'{"type":"heartbeat","ts":%d}' % ts_ns


def _data(kind: str, channel: str, key: str, seq: int, ts_ns: int, data: Any) -> bytes:
    return dumps(
        {"type": kind, "channel": channel, "symbol": key, "seq": seq, "ts": ts_ns, "data": data}
    )


_UPDATE_PREFIX = b'{"type":"update",'
_SNAPSHOT_PREFIX = b'{"type":"snapshot",'


def _as_snapshot(update: bytes) -> bytes:
    return _SNAPSHOT_PREFIX + update[len(_UPDATE_PREFIX) :]


def ticker_update(tick: Tick) -> bytes:
    """The ``ticker`` update of ``tick``, encoded once and cached in ``tick.wire``."""
    cached = tick.wire.get("ws:ticker")
    if cached is None:
        cached = tick.wire["ws:ticker"] = _data(
            "update", "ticker", tick.symbol, tick.seq, tick.ts_ns, tick_quote_fields(tick)
        )
    return cached


def funding_update(tick: Tick) -> bytes:
    """The ``funding`` update of a perpetual's ``tick`` (its mark, index, funding and open
    interest: :func:`~mdactors.api.codec.perpetual_fields`), encoded once per tick."""
    cached = tick.wire.get("ws:funding")
    if cached is None:
        contract = tick.contract
        data = perpetual_fields(contract) if contract is not None else None
        cached = tick.wire["ws:funding"] = _data(
            "update", "funding", tick.symbol, tick.seq, tick.ts_ns, data
        )
    return cached


def funding_snapshot(tick: Tick) -> bytes:
    """The ``funding`` snapshot: the same payload as the update, typed ``snapshot``."""
    return _as_snapshot(funding_update(tick))


def ticker_snapshot(tick: Tick) -> bytes:
    """The ``ticker`` snapshot: the same payload as the update, typed ``snapshot``."""
    return _as_snapshot(ticker_update(tick))


def _trade_json(trade: Trade) -> dict[str, Any]:
    return {
        "id": trade.id,
        "price": trade.price,
        "quantity": trade.quantity,
        "side": trade.side,
        "ts": trade.ts_ns,
    }


def trades_update(tick: Tick, trade: Trade) -> bytes:
    """The ``trades`` update of ``tick`` (one print), cached in ``tick.wire``."""
    cached = tick.wire.get("ws:trades")
    if cached is None:
        cached = tick.wire["ws:trades"] = _data(
            "update", "trades", tick.symbol, tick.seq, tick.ts_ns, [_trade_json(trade)]
        )
    return cached


def trades_snapshot(tick: Tick, recent: Sequence[Trade]) -> bytes:
    """The ``trades`` snapshot: recent prints, newest first."""
    return _data(
        "snapshot", "trades", tick.symbol, tick.seq, tick.ts_ns, [_trade_json(t) for t in recent]
    )


def candle_message(
    kind: str, channel: Channel, key: str, seq: int, ts_ns: int, candle: Candle
) -> bytes:
    """A ``candles:<interval>`` message (``kind`` is ``snapshot`` or ``update``)."""
    return _data(
        kind,
        channel.name,
        key,
        seq,
        ts_ns,
        {
            "interval": candle.interval,
            "start": candle.start_ms,
            "open": candle.open,
            "high": candle.high,
            "low": candle.low,
            "close": candle.close,
            "volume": candle.volume,
            "trades": candle.trades,
            "closed": candle.closed,
        },
    )


def book_message(kind: str, channel: Channel, book: OrderBook) -> bytes:
    """A ``book`` message: the whole synthetic book at the tick (levels best first)."""
    return _data(
        kind,
        channel.name,
        book.symbol,
        book.seq,
        book.ts_ns,
        {
            "bids": [list(level) for level in book.bids],
            "asks": [list(level) for level in book.asks],
        },
    )


def batch_frame(messages: Sequence[bytes]) -> bytes:
    """One frame for several messages: ``{"type":"batch","messages":[...]}``.

    A single message is sent as it is (no wrapper).
    """
    if len(messages) == 1:
        return messages[0]
    return b'{"type":"batch","messages":[' + b",".join(messages) + b"]}"


def resolve_all(
    symbols: Sequence[str], resolve: Callable[[str], str], request_id: RequestId
) -> list[tuple[str, str]]:
    """``(symbol as sent, key)`` for each symbol; the first bad one raises.

    ``resolve`` is the market's: it raises the engine's
    :class:`~mdactors.engine.errors.SymbolError` (malformed) or
    :class:`~mdactors.engine.errors.UnknownSymbol` (not simulated), said here
    as :data:`WS_ERRORS` says them, with the request's id and the symbol as
    the client sent it.
    """
    resolved: list[tuple[str, str]] = []
    for symbol in symbols:
        try:
            resolved.append((symbol, resolve(symbol)))
        except (SymbolError, UnknownSymbol) as error:
            refused = WS_ERRORS(error)
            refused.request_id = request_id
            refused.details["symbol"] = symbol[:40]
            raise refused from None
    return resolved
