"""The WebSocket server: trio-websocket I/O around the sans-I/O protocol of
:mod:`mdactors.api.ws_protocol`.

One :class:`WsServer` per process listens on ``WS_PORT``; each connection is a
:class:`WsSession` with two tasks. The reader parses client messages, updates
the session's subscription table and queues acknowledgements and snapshots
(the outbox, bounded: a client that sends faster than it reads is simply not
read). The writer waits on the session's :class:`~mdactors.engine.subscription.Subscription`
and sends: outbox first, then the pending ticks of every symbol, several per
frame (``batch``) when the client is behind.

A slow client can only hurt itself. It never blocks a Topic: it falls behind
its own cursors, loses the oldest ticks (conflation, counted as drops with
reason ``conflated``), and when it stays behind for ``SLOW_CONSUMER_TIMEOUT``
— or a single send blocks that long — it is closed with code 1008.

On drain the server stops accepting and closes every session with 1001.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import ExitStack, suppress

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest
from trio_websocket import WebSocketServer as _TrioWebSocketServer

from mdactors import __version__
from mdactors.api.binance_ws import BinanceStreams
from mdactors.api.context import ApiContext
from mdactors.api.ws_protocol import (
    Channel,
    LagTracker,
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
    fold_tick,
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
from mdactors.domain.book import synthesize_book
from mdactors.domain.candles import Candle
from mdactors.domain.symbols import spec_for
from mdactors.domain.tick import Tick, trade_of
from mdactors.engine.subscription import StreamClosed, Subscription, TooManyStreams

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_POLICY",
    "MAX_TICKS_PER_SYMBOL",
    "WsServer",
    "WsSession",
    "serve_ws",
]

log = logging.getLogger("mdactors.ws")

CLIENT_TYPE = "ws"
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
MAX_TICKS_PER_SYMBOL = 32
"""Most ticks of one symbol in one frame; a client further behind loses the oldest."""
OUTBOX_LIMIT = 256
"""Queued control messages per session before the server stops reading that client."""
TRADES_SNAPSHOT = 50
CLOSE_GRACE_S = 2.0
HANDSHAKE_TIMEOUT_S = 10.0
_LINGER_RESET = struct.pack("ii", 1, 0)

Handler = Callable[["WsServer", WebSocketRequest], Awaitable[None]]
Takeover = Callable[[WebSocketConnection, str | bytes], Awaitable[None]]


class _SlowClient(Exception):
    """The client stayed behind too long; the session ends with 1008."""


class _StuckClient(_SlowClient):
    """One send blocked too long: a frame is half written, so no close frame can
    follow it; the TCP connection is reset instead (the client sees 1006)."""


class WsSession:
    """One WebSocket connection: the protocol state plus a reader and a writer task."""

    def __init__(self, server: WsServer, ws: WebSocketConnection) -> None:
        self.server = server
        self.ctx = server.ctx
        self.ws = ws
        settings = self.ctx.settings
        self.state = SessionState(settings.max_stream_symbols)
        self.subscription: Subscription | None = None
        self._stack: ExitStack | None = None
        self._outbox: deque[bytes] = deque()
        self._space = trio.lowlevel.ParkingLot()
        self._kick: trio.CancelScope | None = None
        self._closing: tuple[int, str] | None = None
        self._lag = LagTracker(settings.slow_consumer_timeout)
        self._latency = self.ctx.metrics.publication_latency.labels(CLIENT_TYPE)
        self._first_seen = False
        self.handover: str | bytes | None = None
        """The first message, when another protocol took the connection over (see
        :attr:`WsServer.takeover`); the session then ends without closing it."""

    # ------------------------------------------------------------------ control

    def request_close(self, code: int, reason: str) -> None:
        """Ask the session to close with ``code`` after the frame being sent."""
        if self._closing is None:
            self._closing = (code, reason)
        self._wake_writer()

    def _wake_writer(self) -> None:
        if self._kick is not None:
            self._kick.cancel()

    def _send_later(self, message: bytes) -> None:
        self._outbox.append(message)

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
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_loop)
                await self._write_guarded()
                nursery.cancel_scope.cancel()
        finally:
            self._release()
        if self._closing is not None:
            code, reason = self._closing
            with trio.move_on_after(CLOSE_GRACE_S):
                await self.ws.aclose(code, reason)

    async def _write_guarded(self) -> None:
        try:
            await self._write_loop()
        except _SlowClient as slow:
            self._count_lost()
            self.server.slow_disconnects += 1
            log.warning(
                "closing slow websocket client", extra={"event": "ws_slow_client", "why": str(slow)}
            )
            if isinstance(slow, _StuckClient):
                self._closing = None
                await self._reset()
            else:
                self._closing = (CLOSE_POLICY, str(slow))
        except ConnectionClosed:
            self._closing = None

    async def _reset(self) -> None:
        """Drop the TCP connection at once (RST), discarding what the kernel still holds.

        trio-websocket 0.12 has no public abort; its connection keeps the
        transport in ``_stream``. Without it, the connection is closed the
        ordinary way when the handler returns.
        """
        stream = getattr(self.ws, "_stream", None)
        if isinstance(stream, trio.SocketStream):
            with suppress(OSError):
                stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            await trio.aclose_forcefully(stream)

    def _count_lost(self) -> None:
        subscription = self.subscription
        if subscription is None:
            return
        for key, reader in subscription.readers.items():
            self.ctx.streams.record_drop(key, CLIENT_TYPE, "disconnected", max(0, reader.lag))

    def _release(self) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack = None
        self.subscription = None

    # ------------------------------------------------------------------ reader

    async def _read_loop(self) -> None:
        settings = self.ctx.settings
        while True:
            while len(self._outbox) >= OUTBOX_LIMIT:
                await self._space.park()
            try:
                data = await self.ws.get_message()
            except ConnectionClosed:
                self.request_close(1000, "")
                return
            if self._claimed(data):
                return
            try:
                message = decode_client_message(
                    data,
                    max_bytes=settings.max_request_bytes,
                    max_symbols=settings.max_stream_symbols,
                )
                self._handle(message)
            except ProtocolError as error:
                self._send_later(error_message(error))
            except StreamClosed:
                self.request_close(CLOSE_GOING_AWAY, "server shutting down")
                return
            self._wake_writer()

    def _claimed(self, data: str | bytes) -> bool:
        """On the first message only: whether another protocol takes the connection over."""
        if self._first_seen:
            return False
        self._first_seen = True
        claims = self.server.takeover
        if claims is not None and claims[0](data):
            self.handover = data
            self._wake_writer()
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
                raise ProtocolError(
                    "too_many_streams", f"{error}; retry later", request_id=message.id
                ) from None
        self._send_later(subscribed_message(result, message.id))
        for _, key, channel in result.added:
            self._send_later(self._snapshot(key, channel))

    def _reopen(self) -> None:
        """Follow exactly the state's keys: swap to a new Subscription, keeping
        the cursors of symbols still followed (no tick lost or repeated) and
        starting new symbols after their latest tick (which their snapshot holds)."""
        keys = self.state.keys
        old = self.subscription
        self._release()
        if not keys:
            return
        market = self.ctx.market
        topics = {key: market.actor(key).topic for key in keys}
        subscription = Subscription(topics)
        for key, topic in topics.items():
            kept = old.readers.get(key) if old is not None else None
            subscription.readers[key] = kept or topic.reader(from_latest=False)
        stack = ExitStack()
        stack.enter_context(self.ctx.streams.open(CLIENT_TYPE, subscription))
        self._stack = stack
        self.subscription = subscription

    def _snapshot(self, key: str, channel: Channel) -> bytes:
        ctx = self.ctx
        tick = ctx.market.latest(key)
        self.state.mark_snapshot(key, channel, tick.seq)
        if channel.kind == "ticker":
            return ticker_snapshot(tick)
        if channel.kind == "trades":
            return trades_snapshot(tick, ctx.recorder.recent_trades(key, TRADES_SNAPSHOT))
        if channel.kind == "candles":
            return candle_message(
                "snapshot", channel, key, tick.seq, tick.ts_ns, self.server.candle_at(tick, channel)
            )
        book = synthesize_book(
            spec_for(key), tick.bid, tick.ask, channel.depth, tick.seq, tick.ts_ns
        )
        return book_message("snapshot", channel, book)

    # ------------------------------------------------------------------ writer

    async def _write_loop(self) -> None:
        settings = self.ctx.settings
        heartbeat = settings.ws_heartbeat_interval
        slow_after = settings.slow_consumer_timeout
        last_sent = trio.current_time()
        while self._closing is None and self.handover is None:
            subscription = self.subscription
            if not self._outbox and not (subscription is not None and subscription.pending()):
                with trio.CancelScope() as kick:
                    self._kick = kick
                    with trio.move_on_at(last_sent + heartbeat) as idle:
                        try:
                            if subscription is None:
                                await trio.sleep_forever()
                            else:
                                await subscription.wait()
                        except StreamClosed:
                            self.request_close(CLOSE_GOING_AWAY, "server shutting down")
                    if idle.cancelled_caught:
                        self._send_later(heartbeat_message(time.time_ns()))
                self._kick = None
                continue
            messages = list(self._outbox)
            self._outbox.clear()
            self._space.unpark_all()
            oldest_ns = self._collect(messages) if subscription is not None else 0
            frame = batch_frame(messages).decode()
            with trio.move_on_after(slow_after) as sending:
                await self.ws.send_message(frame)
            if sending.cancelled_caught:
                raise _StuckClient(f"slow consumer: one frame took over {slow_after:g}s to send")
            last_sent = trio.current_time()
            if oldest_ns:
                self._latency.observe((time.time_ns() - oldest_ns) / 1e9)

    def _collect(self, messages: list[bytes]) -> int:
        """Append the pending updates of every symbol; return the oldest tick's stamp."""
        subscription = self.subscription
        assert subscription is not None
        state = self.state
        streams = self.ctx.streams
        oldest_ns = 0
        dropped = 0
        most = 0
        for key, ticks, gap in subscription.take(MAX_TICKS_PER_SYMBOL):
            if gap:
                streams.record_drop(key, CLIENT_TYPE, "conflated", gap)
                dropped += gap
            if len(ticks) > most:
                most = len(ticks)
            channels = state.channels.get(key)
            if not channels or not ticks:
                continue
            if not oldest_ns or ticks[0].ts_ns < oldest_ns:
                oldest_ns = ticks[0].ts_ns
            newest = ticks[-1]
            for channel in channels.values():
                kind = channel.kind
                if kind == "ticker":
                    messages.extend(
                        ticker_update(tick) for tick in ticks if state.wants(key, channel, tick.seq)
                    )
                elif kind == "trades":
                    for tick in ticks:
                        trade = trade_of(tick)
                        if trade is not None and state.wants(key, channel, tick.seq):
                            messages.append(trades_update(tick, trade))
                elif state.wants(key, channel, newest.seq):
                    messages.append(self.server.state_update(newest, channel))
        if self._lag.observe(trio.current_time(), dropped, most):
            raise _SlowClient(f"slow consumer: behind the feed for over {self._lag.timeout:g}s")
        return oldest_ns


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

    def candle_at(self, tick: Tick, channel: Channel) -> Candle:
        """The open candle of ``channel``'s interval including ``tick``."""
        recorder = self.ctx.recorder
        candle = recorder.open_candle(tick.symbol, channel.interval)
        if recorder.observed_seq.get(tick.symbol, 0) < tick.seq or candle is None:
            candle = fold_tick(candle, tick, channel.interval)
        return candle

    def state_update(self, tick: Tick, channel: Channel) -> bytes:
        """A ``candles``/``book`` update at ``tick``, encoded once per tick and channel
        for every session (only the newest tick's encoding is kept)."""
        slot = (tick.symbol, channel.name)
        cached = self._state_cache.get(slot)
        if cached is not None and cached[0] == tick.seq:
            return cached[1]
        if channel.kind == "book":
            book = synthesize_book(
                spec_for(tick.symbol), tick.bid, tick.ask, channel.depth, tick.seq, tick.ts_ns
            )
            message = book_message("update", channel, book)
        else:
            message = candle_message(
                "update", channel, tick.symbol, tick.seq, tick.ts_ns, self.candle_at(tick, channel)
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


async def serve_ws(
    ctx: ApiContext,
    ports: dict[str, int],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the WebSocket server as a supervisor listener; records ``ports["ws"]``.

    The server speaks the JSON protocol and, through :class:`BinanceStreams`,
    Binance's market streams.
    """
    server = WsServer(ctx)
    binance = BinanceStreams(server)

    async def started(task_status: trio.TaskStatus[int]) -> None:
        await server.run(task_status=task_status)
        nursery.cancel_scope.cancel()

    async def close_binance_on_drain() -> None:
        await ctx.lifecycle.draining.wait()
        binance.close_all()

    async with trio.open_nursery() as nursery:
        await nursery.start(binance.run)
        nursery.start_soon(close_binance_on_drain)
        ports["ws"] = await nursery.start(started)
        task_status.started()
