"""The WebSocket server: trio-websocket I/O around the sans-I/O protocol of
:mod:`mdactors.api.ws.protocol`.

One :class:`WsServer` per process listens on ``WS_PORT``; each connection is a
:class:`WsSession` (an :class:`~mdactors.api.ws.session.OutboxSession`) with
two tasks. The reader parses client messages, updates the session's
subscription table and queues acknowledgements and snapshots (the outbox,
bounded: a client that sends faster than it reads is simply not read). The
writer waits on the session's :class:`~mdactors.engine.subscription.Subscription`
and sends: outbox first, then the pending ticks of every symbol, several per
frame (``batch``) when the client is behind.

A slow client can only hurt itself. It never blocks a Topic: it falls behind
its own cursors and loses the oldest ticks (conflation, counted as drops with
reason ``conflated``); a frame that does not go out within
``SLOW_CONSUMER_TIMEOUT`` ends it (the stream outlet's decision, see
:mod:`mdactors.api.ws.session`): closed with code 1008, or its TCP connection
reset when the frame is half written.

On drain the server stops accepting and closes every session with 1001.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Protocol

import trio
from trio_websocket import WebSocketConnection, WebSocketRequest
from trio_websocket import WebSocketServer as _TrioWebSocketServer

from mdactors import __version__
from mdactors.api.context import ApiContext
from mdactors.api.ws.broadcast import broadcasts
from mdactors.api.ws.protocol import (
    WS_ERRORS,
    Channel,
    ListRequest,
    Ping,
    ProtocolError,
    SessionState,
    Subscribe,
    Unsubscribe,
    batch_frame,
    book_message,
    candle_message,
    decode_client_message,
    error_message,
    funding_snapshot,
    funding_update,
    heartbeat_message,
    pong_message,
    resolve_all,
    subscribed_message,
    subscriptions_message,
    ticker_snapshot,
    ticker_update,
    trades_snapshot,
    trades_update,
    unsubscribed_message,
    welcome_message,
)
from mdactors.api.ws.session import CLOSE_GOING_AWAY, CLOSE_GRACE_S, CLOSE_POLICY, OutboxSession
from mdactors.domain.symbols import is_perpetual
from mdactors.domain.tick import Tick, trade_of
from mdactors.engine.subscription import StreamClosed, TooManyStreams
from mdactors.net import shared_listen_socket

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_POLICY",
    "MAX_TICKS_PER_SYMBOL",
    "WsPlugin",
    "WsServer",
    "WsSession",
    "serve_ws",
]

log = logging.getLogger("mdactors.ws")

CLIENT_TYPE = "ws"
MAX_TICKS_PER_SYMBOL = 32
"""Most ticks of one symbol in one frame; a client further behind loses the oldest."""
OUTBOX_LIMIT = 256
"""Queued control messages per session before the server stops reading that client."""
TRADES_SNAPSHOT = 50
HANDSHAKE_TIMEOUT_S = 10.0

Handler = Callable[["WsServer", WebSocketRequest], Awaitable[None]]
Takeover = Callable[[WebSocketConnection, str | bytes], Awaitable[None]]


class WsSession(OutboxSession):
    """One connection speaking the JSON protocol: its subscription table and snapshots."""

    client_type = CLIENT_TYPE
    outbox_limit = OUTBOX_LIMIT
    take_limit = MAX_TICKS_PER_SYMBOL
    broadcast = True

    def __init__(self, server: WsServer, ws: WebSocketConnection) -> None:
        super().__init__(server, ws)
        settings = self.ctx.settings
        self.state = SessionState(settings.max_stream_symbols)
        self.heartbeat_interval = settings.ws_heartbeat_interval
        self._first_seen = False
        self.handover: str | bytes | None = None
        """The first message, when another protocol took the connection over (see
        :attr:`WsServer.takeover`); the session then ends without closing it."""

    # ------------------------------------------------------------------ run

    async def run(self) -> None:
        """Serve the connection until either side closes it."""
        ctx = self.ctx
        limits = {
            "max_symbols": ctx.settings.max_stream_symbols,
            "max_message_bytes": ctx.settings.max_request_bytes,
            "max_ticks_per_symbol_per_frame": MAX_TICKS_PER_SYMBOL,
            "heartbeat_interval_s": ctx.settings.ws_heartbeat_interval,
            "slow_client_timeout_s": ctx.settings.slow_consumer_timeout,
        }
        self._send_later(welcome_message(__version__, ctx.market.symbols, limits, time.time_ns()))
        try:
            await self._serve()
        finally:
            self._release()
        await self._close()

    # ------------------------------------------------------------------ reader

    def _on_message(self, data: str | bytes) -> bool:
        if self._claimed(data):
            return False
        settings = self.ctx.settings
        try:
            message = decode_client_message(
                data,
                max_bytes=settings.max_request_bytes,
                max_symbols=settings.max_stream_symbols,
            )
            self._handle(message)
        except ProtocolError as error:
            self._send_later(error_message(error))
        except StreamClosed as error:
            self.request_close(CLOSE_GOING_AWAY, WS_ERRORS(error).message)
            return False
        return True

    def _claimed(self, data: str | bytes) -> bool:
        """On the first message only: whether another protocol takes the connection over."""
        if self._first_seen:
            return False
        self._first_seen = True
        claims = self.server.takeover
        if claims is not None and claims[0](data):
            self.handover = data
            self._detach()
            return True
        return False

    def _handle(self, message: Subscribe | Unsubscribe | Ping | ListRequest) -> None:
        if isinstance(message, Subscribe):
            self._subscribe(message)
        elif isinstance(message, Unsubscribe):
            keys = [key for _, key in resolve_all(message.symbols, self._resolve, message.id)]
            before = set(self.state.keys)
            removed = self.state.unsubscribe(keys, message.channels)
            if set(self.state.keys) != before:
                self._reopen()
            self._send_later(unsubscribed_message(removed, message.id))
        elif isinstance(message, Ping):
            self._send_later(pong_message(message.id, time.time_ns()))
        else:
            self._send_later(subscriptions_message(self.state, message.id))

    def _resolve(self, raw: str) -> str:
        return self.ctx.market.resolve(raw)

    def _subscribe(self, message: Subscribe) -> None:
        resolved = resolve_all(message.symbols, self._resolve, message.id)
        if any(channel.kind == "funding" for channel in message.channels):
            for raw, key in resolved:
                if not is_perpetual(key):
                    raise ProtocolError(
                        "bad_channel",
                        f"funding is a perpetual's channel; {raw[:40]!r} is not a perpetual",
                        request_id=message.id,
                        channel="funding",
                    )
        try:
            result = self.state.subscribe(resolved, message.channels)
        except ProtocolError as error:
            error.request_id = message.id
            raise
        if result.new_keys:
            try:
                self._reopen()
            except TooManyStreams as error:
                self.state.unsubscribe(result.new_keys, None)
                refused = WS_ERRORS(error)
                refused.request_id = message.id
                raise refused from None
        self._send_later(subscribed_message(result, message.id))
        for _, key, channel in result.added:
            self._send_later(self._snapshot(key, channel))

    def _reopen(self) -> None:
        """Follow exactly the state's keys (new symbols start after their latest
        tick, which their snapshot holds)."""
        market = self.ctx.market
        self._follow({key: market.actor(key).topic for key in self.state.keys})

    def _snapshot(self, key: str, channel: Channel) -> bytes:
        ctx = self.ctx
        tick = ctx.market.latest(key)
        self.state.mark_snapshot(key, channel, tick.seq)
        if channel.kind == "ticker":
            return ticker_snapshot(tick)
        if channel.kind == "trades":
            return trades_snapshot(tick, ctx.view.recent_trades(key, TRADES_SNAPSHOT))
        if channel.kind == "funding":
            return funding_snapshot(tick)
        if channel.kind == "candles":
            return candle_message(
                "snapshot",
                channel,
                key,
                tick.seq,
                tick.ts_ns,
                ctx.view.forming_candle(tick, channel.interval),
            )
        book = ctx.view.book(tick, channel.depth)
        return book_message("snapshot", channel, book)

    # ------------------------------------------------------------------ writer

    def _heartbeat(self) -> bytes:
        return heartbeat_message(time.time_ns())

    def _frames(self, messages: list[bytes]) -> list[bytes]:
        return [batch_frame(messages)]

    def rendering(self) -> Hashable:
        """Sessions following the same channels of the one symbol, every snapshot
        older than its latest tick, render the same frames."""
        [(key, channels)] = self.state.channels.items()
        latest = self.subscription.topics[key].latest() if self.subscription else None
        newest = latest.seq if latest is not None else 0
        since = self.state.since
        if any(since.get((key, name), 0) > newest for name in channels):
            return self
        return (CLIENT_TYPE, key, tuple(channels))

    def _updates(self, key: str, items: list[Tick], messages: list[bytes]) -> None:
        channels = self.state.channels.get(key)
        if not channels:
            return
        state = self.state
        newest = items[-1]
        for channel in channels.values():
            kind = channel.kind
            if kind == "ticker":
                messages.extend(
                    ticker_update(tick) for tick in items if state.wants(key, channel, tick.seq)
                )
            elif kind == "funding":
                messages.extend(
                    funding_update(tick) for tick in items if state.wants(key, channel, tick.seq)
                )
            elif kind == "trades":
                for tick in items:
                    trade = trade_of(tick)
                    if trade is not None and state.wants(key, channel, tick.seq):
                        messages.append(trades_update(tick, trade))
            elif state.wants(key, channel, newest.seq):
                messages.append(self.server.state_update(newest, channel))


class WsServer:
    """The WebSocket listener and its sessions.

    Paths are dispatched by :meth:`route`: the JSON protocol lives at ``/``
    and ``/ws``; other protocols (e.g. Binance-style streams) add entries to
    :attr:`routes` or :attr:`prefix_routes`. :attr:`takeover`, when set, is
    ``(claims, handler)``: a JSON session whose first message ``claims(message)``
    accepts is handed to ``handler(connection, message)``.
    """

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.sessions: set[WsSession] = set()
        self.port = 0
        self.slow_disconnects = 0
        self.routes: dict[str, Handler] = {"/": WsServer.serve_json, "/ws": WsServer.serve_json}
        self.prefix_routes: dict[str, Handler] = {}
        self.takeover: tuple[Callable[[str | bytes], bool], Takeover] | None = None
        self._no_sessions = trio.Event()
        self.broadcasts = broadcasts()
        self._state_cache: dict[tuple[str, str], tuple[int, bytes]] = {}

    def route(self, path: str) -> Handler | None:
        """The handler of a request path (query string ignored), or ``None``."""
        route = path.split("?", 1)[0]
        handler = self.routes.get(route)
        if handler is None:
            for prefix, prefixed in self.prefix_routes.items():
                if route.startswith(prefix):
                    return prefixed
        return handler

    # ------------------------------------------------------------------ shared encodings

    def state_update(self, tick: Tick, channel: Channel) -> bytes:
        """A ``candles``/``book`` update at ``tick``, encoded once per tick and channel
        for every session (only the newest tick's encoding is kept)."""
        slot = (tick.symbol, channel.name)
        cached = self._state_cache.get(slot)
        if cached is not None and cached[0] == tick.seq:
            return cached[1]
        if channel.kind == "book":
            book = self.ctx.view.book(tick, channel.depth)
            message = book_message("update", channel, book)
        else:
            message = candle_message(
                "update",
                channel,
                tick.symbol,
                tick.seq,
                tick.ts_ns,
                self.ctx.view.forming_candle(tick, channel.interval),
            )
        self._state_cache[slot] = (tick.seq, message)
        return message

    # ------------------------------------------------------------------ connections

    async def _handle(self, request: WebSocketRequest) -> None:
        handler = self.route(request.path)
        if handler is None:
            await request.reject(
                404, body=b"unknown WebSocket path; use / or /ws for the JSON protocol\n"
            )
            return
        streams = self.ctx.streams
        if self.ctx.lifecycle.draining.is_set():
            await request.reject(503, body=b"server is shutting down\n")
            return
        if streams.active >= streams.max_streams:
            await request.reject(503, body=b"stream limit reached; retry later\n")
            return
        try:
            await handler(self, request)
        except Exception:
            log.exception("websocket session failed", extra={"event": "ws_session_error"})

    async def serve_json(self, request: WebSocketRequest) -> None:
        """The JSON subscribe/unsubscribe protocol (``/`` and ``/ws``)."""
        ws = await request.accept()
        session = WsSession(self, ws)
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
            if not self.sessions:
                self._no_sessions.set()
        if session.handover is not None and self.takeover is not None:
            await self.takeover[1](ws, session.handover)

    async def run(self, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, serve until the drain begins, close every session with 1001, return."""
        settings = self.ctx.settings
        if settings.reuse_port:  # serve --workers: one port shared by every worker
            shared = shared_listen_socket(settings.host, settings.ws_port)
            listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(shared))]
        else:
            listeners = await trio.open_tcp_listeners(settings.ws_port, host=settings.host or None)
        for listener in listeners:
            if settings.ws_send_buffer_bytes:
                # Accepted sockets inherit the listener's send buffer: it bounds
                # what the kernel holds for one slow client.
                listener.socket.setsockopt(
                    socket.SOL_SOCKET, socket.SO_SNDBUF, settings.ws_send_buffer_bytes
                )
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as handlers:
            self.broadcasts.nursery = handlers
            server = _TrioWebSocketServer(
                self._handle,
                listeners,
                handler_nursery=handlers,
                max_message_size=4 * settings.max_request_bytes,
                connect_timeout=HANDSHAKE_TIMEOUT_S,
                disconnect_timeout=CLOSE_GRACE_S,
            )
            async with trio.open_nursery() as accepting:
                await accepting.start(server.run)
                log.info(
                    "listening",
                    extra={"event": "listening", "transport": "ws", "port": self.port},
                )
                task_status.started(self.port)
                await self.ctx.lifecycle.draining.wait()
                accepting.cancel_scope.cancel()
            await self._close_all()
            handlers.cancel_scope.cancel()

    async def _close_all(self) -> None:
        if not self.sessions:
            return
        self._no_sessions = trio.Event()
        for session in list(self.sessions):
            session.request_close(CLOSE_GOING_AWAY, "server shutting down")
        with trio.move_on_after(self.ctx.settings.shutdown_timeout):
            await self._no_sessions.wait()


class WsPlugin(Protocol):
    """Another protocol on the WebSocket port, beside the JSON one: it adds its
    routes to the :class:`WsServer` it is built with (``plugin(server)``)."""

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the protocol's own tasks until cancelled."""

    def close_all(self) -> None:
        """Ask every session of the protocol to close with 1001 (drain)."""


async def serve_ws(
    ctx: ApiContext,
    ports: dict[str, int],
    plugins: Sequence[Callable[[WsServer], WsPlugin]] = (),
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the WebSocket server as a supervisor listener; records ``ports["ws"]``.

    The server speaks the JSON protocol and every protocol in ``plugins``
    (the service passes Binance's market streams).
    """
    server = WsServer(ctx)
    running = [plugin(server) for plugin in plugins]

    async def started(task_status: trio.TaskStatus[int]) -> None:
        await server.run(task_status=task_status)
        nursery.cancel_scope.cancel()

    async def close_plugins_on_drain() -> None:
        await ctx.lifecycle.draining.wait()
        for plugin in running:
            plugin.close_all()

    async with trio.open_nursery() as nursery:
        for plugin in running:
            await nursery.start(plugin.run)
        nursery.start_soon(close_plugins_on_drain)
        ports["ws"] = await nursery.start(started)
        task_status.started()
