"""The session machinery shared by every protocol on the WebSocket port.

An :class:`OutboxSession` is one connection served by two tasks. The reader
hands each client message to the protocol (:meth:`OutboxSession._on_message`),
which queues its replies in the outbox; the outbox is bounded, so a client
that sends faster than it reads is simply not read. The writer waits on the
session's :class:`~mdactors.engine.subscription.Subscription` (or on a kick
from the reader) and sends: outbox first, then the updates the protocol
renders from the pending items of every followed Topic.

A slow client can only hurt itself. It never blocks a Topic: it falls behind
its own cursors, loses the oldest items (conflation, counted as drops with
reason ``conflated``), and when it stays behind for ``SLOW_CONSUMER_TIMEOUT``
it is closed with 1008; when a single send blocks that long, its TCP
connection is reset (a frame is half written, so no close frame can follow).
"""

from __future__ import annotations

import logging
import math
import socket
import struct
import time
from collections import deque
from collections.abc import Iterable, Mapping
from contextlib import ExitStack, suppress
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from mdactors.adapters.latency_histogram import LatencySeries
from mdactors.api.ws.protocol import WS_ERRORS, LagTracker
from mdactors.engine.subscription import StreamClosed, Subscription
from mdactors.engine.topic import Topic

if TYPE_CHECKING:
    from mdactors.api.context import ApiContext
    from mdactors.api.ws.broadcast import Broadcaster
    from mdactors.engine.fanout import FanOuts

__all__ = ["CLOSE_GOING_AWAY", "CLOSE_GRACE_S", "CLOSE_POLICY", "OutboxSession", "SessionHost"]

log = logging.getLogger("mdactors.ws")

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_GRACE_S = 2.0
"""How long the closing handshake may take before the connection is dropped."""
_LINGER_RESET = struct.pack("ii", 1, 0)


class SessionHost(Protocol):
    """What a session needs of the server it runs in
    (:class:`~mdactors.api.ws.server.WsServer` is one)."""

    ctx: ApiContext
    broadcasts: FanOuts[Broadcaster]
    """The fast paths of this server's Topics (see :attr:`OutboxSession.broadcast`)."""
    slow_disconnects: int
    """Sessions closed as slow consumers, counted by the session that was closed."""


class _SlowClient(Exception):
    """The client stayed behind too long; the session ends with 1008."""


class _StuckClient(_SlowClient):
    """One send blocked too long: a frame is half written, so no close frame can
    follow it; the TCP connection is reset instead (the client sees 1006)."""


class OutboxSession:
    """One WebSocket connection: an outbox, a reader and a writer task.

    Subclasses speak a protocol through a few hooks: :meth:`_on_message`
    (a client message), :meth:`_updates` (the messages of one Topic's pending
    items), :meth:`_frames` (how messages become frames) and, with a finite
    :attr:`heartbeat_interval`, :meth:`_heartbeat`. They follow Topics with
    :meth:`_follow` and run the session with :meth:`_serve` then :meth:`_close`.
    """

    client_type: str
    """The ``client_type`` label of this protocol's stream, drop and latency metrics."""
    outbox_limit: int
    """Queued messages before the reader stops reading the client."""
    take_limit: int
    """Most items of one Topic taken per frame; a client further behind loses the oldest."""
    heartbeat_interval = math.inf
    """Idle seconds after which :meth:`_heartbeat` is sent (``inf``: never)."""
    broadcast = False
    """Whether a single-symbol session's updates are sent by its symbol's fan-out
    (:mod:`mdactors.api.ws.broadcast`) rather than its writer; needs :meth:`_frame_payload`."""

    def __init__(self, server: SessionHost, ws: WebSocketConnection) -> None:
        self.server = server
        self.ctx = server.ctx
        self.ws = ws
        self.subscription: Subscription | None = None
        self._stack: ExitStack | None = None
        self._outbox: deque[bytes] = deque()
        self._space = trio.lowlevel.ParkingLot()
        self._kick: trio.CancelScope | None = None
        self._closing: tuple[int, str] | None = None
        self._detached = False
        self._lag = LagTracker(self.ctx.settings.slow_consumer_timeout)
        self._last_sent = 0.0
        self.fan_out: Broadcaster | None = None
        """The fan-out serving this session's one symbol, if any."""
        self.taken_ns = 0
        """The oldest stamp (ns) in the frame of the last :meth:`take_broadcast`."""
        self._ending: Exception | None = None
        self.slow_after = self.ctx.settings.slow_consumer_timeout
        self.fast = False
        """Whether the writer is parked and the fast path serves this session."""

    # ------------------------------------------------------------------ control

    def request_close(self, code: int, reason: str) -> None:
        """Ask the session to close with ``code`` after the frame being sent."""
        if self._closing is None:
            self._closing = (code, reason)
        self.wake_writer()

    def _detach(self) -> None:
        """End the session without closing the connection (its caller goes on using it)."""
        self._detached = True
        self.wake_writer()

    def wake_writer(self) -> None:
        """Wake the writer task (it takes over from the fast path until caught up again)."""
        self.fast = False
        if self._kick is not None:
            self._kick.cancel()

    def _send_later(self, message: bytes) -> None:
        self._outbox.append(message)

    def _follow(self, topics: Mapping[str, Topic[Any]]) -> None:
        """Follow exactly ``topics``: swap to a new Subscription, keeping the cursors
        of keys still followed (no item lost or repeated) and starting new keys
        after their latest item."""
        old = self.subscription
        self._release()
        if not topics:
            return
        subscription = Subscription(topics)
        for key, topic in topics.items():
            kept = old.readers.get(key) if old is not None else None
            subscription.readers[key] = kept or topic.reader(from_latest=False)
        stack = ExitStack()
        stack.enter_context(self.ctx.streams.open(self.client_type, subscription))
        self._stack = stack
        self.subscription = subscription
        if self.broadcast and len(topics) == 1:
            [(key, topic)] = topics.items()
            self.fan_out = self.server.broadcasts.join(self, key, topic)

    def _release(self) -> None:
        if self.fan_out is not None:
            self.server.broadcasts.leave(self, self.fan_out.key)
            self.fan_out = None
        self.fast = False
        if self._stack is not None:
            self._stack.close()
        self._stack = None
        self.subscription = None

    # ------------------------------------------------------------------ protocol hooks

    def _on_message(self, data: str | bytes) -> bool:
        """Handle one client message; return whether to go on reading."""
        raise NotImplementedError

    def _updates(self, key: str, items: list[Any], messages: list[bytes]) -> int:
        """Append the messages of ``key``'s pending ``items``; return the oldest
        stamp (ns) among those sent, ``0`` if none or unknown."""
        raise NotImplementedError

    def _frame_payload(self, messages: list[bytes]) -> bytes:
        """The payload of the one text frame carrying ``messages`` (for :attr:`broadcast`)."""
        raise NotImplementedError

    def _frames(self, messages: list[bytes]) -> Iterable[str]:
        """The frames carrying ``messages`` (one frame per message by default)."""
        return [message.decode() for message in messages]

    def _heartbeat(self) -> bytes:
        """The message sent after :attr:`heartbeat_interval` idle seconds."""
        raise NotImplementedError

    # ------------------------------------------------------------------ run

    async def _serve(self) -> None:
        """Run the reader and the writer until either side ends the session."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_loop)
            await self._write_guarded()
            nursery.cancel_scope.cancel()

    async def _close(self) -> None:
        """Close the connection as requested, if a close was requested."""
        if self._closing is not None:
            code, reason = self._closing
            with trio.move_on_after(CLOSE_GRACE_S):
                await self.ws.aclose(code, reason)

    async def _read_loop(self) -> None:
        while True:
            while len(self._outbox) >= self.outbox_limit:
                await self._space.park()
            try:
                data = await self.ws.get_message()
            except ConnectionClosed:
                self.request_close(1000, "")
                return
            if not self._on_message(data):
                return
            self.wake_writer()

    async def _write_guarded(self) -> None:
        try:
            await self._write_loop()
        except _SlowClient as slow:
            self._count_lost()
            self.server.slow_disconnects += 1
            log.warning(
                "closing slow websocket client",
                extra={"event": "ws_slow_client", "why": str(slow), "client": self.client_type},
            )
            if isinstance(slow, _StuckClient):
                self._closing = None
                await self._reset()
            else:
                self._closing = (CLOSE_POLICY, str(slow))
        except ConnectionClosed:
            self._closing = None

    async def _reset(self) -> None:
        """Drop the TCP connection at once (RST), discarding what the kernel still holds."""
        self.abort()
        await trio.lowlevel.checkpoint()

    def abort(self) -> None:
        """Reset the TCP connection now, from any task (trio wakes whoever waits on it).

        trio-websocket 0.12 has no public abort; its connection keeps the
        transport in ``_stream``. Without it, the connection is closed the
        ordinary way when the handler returns.
        """
        sock = self._socket
        if sock is not None and sock.fileno() >= 0:
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            sock.close()

    def _count_lost(self) -> None:
        subscription = self.subscription
        if subscription is None:
            return
        for key, reader in subscription.readers.items():
            self.ctx.streams.record_drop(key, self.client_type, "disconnected", max(0, reader.lag))

    # ------------------------------------------------------------------ writer

    @cached_property
    def _latency(self) -> LatencySeries:
        # Bound on the first stamped frame: a protocol without stamps adds no series.
        return self.ctx.metrics.publication_latency.labels(self.client_type)

    async def _write_loop(self) -> None:
        slow_after = self.slow_after
        self._last_sent = trio.current_time()
        while self._closing is None and not self._detached:
            if self._ending is not None:
                raise self._ending
            subscription = self.subscription
            if not self._outbox:
                if self.fan_out is not None and self._served_fast(subscription):
                    await self._idle(subscription, self.fan_out)
                    continue
                if not (subscription is not None and subscription.pending()):
                    await self._idle(subscription, None)
                    continue
            messages = list(self._outbox)
            self._outbox.clear()
            self._space.unpark_all()
            oldest_ns = self._collect(subscription, messages) if subscription is not None else 0
            for frame in self._frames(messages):
                with trio.move_on_after(slow_after) as sending:
                    await self.ws.send_message(frame)
                if sending.cancelled_caught:
                    raise _StuckClient(
                        f"slow consumer: one frame took over {slow_after:g}s to send"
                    )
            self._last_sent = trio.current_time()
            if oldest_ns:
                self._latency.observe((time.time_ns() - oldest_ns) / 1e9)

    async def _idle(self, subscription: Subscription | None, fan_out: Broadcaster | None) -> None:
        """Wait for a kick or the heartbeat, and for news unless ``fan_out`` serves it."""
        heartbeat = self.heartbeat_interval
        with trio.CancelScope() as kick:
            self._kick = kick
            with trio.move_on_at(self._last_sent + heartbeat) as idle:
                try:
                    if subscription is None:
                        await trio.sleep_forever()
                    elif fan_out is not None:
                        self.fast = True
                        fan_out.catch_up(self)  # pending ticks go out from its task
                        await trio.sleep_forever()
                    else:
                        await subscription.wait()
                except StreamClosed as error:
                    self.request_close(CLOSE_GOING_AWAY, WS_ERRORS(error).message)
            # The fast path may have sent since the deadline was set.
            if idle.cancelled_caught and trio.current_time() - self._last_sent >= heartbeat:
                self._send_later(self._heartbeat())
        self.fast = False
        self._kick = None

    @staticmethod
    def _served_fast(subscription: Subscription | None) -> bool:
        """Whether the fast path can serve the stream (not ended, its Topic open)."""
        return (
            subscription is not None
            and not subscription.stopped
            and not any(topic.closed for topic in subscription.topics.values())
        )

    # ------------------------------------------------------------------ fast path

    @property
    def send_lock(self) -> trio.StrictFIFOLock:
        """trio-websocket's lock serialising writes on the connection (0.12 keeps it private)."""
        return self.ws._stream_lock

    def socket_fd(self) -> int:
        """The connection's socket descriptor, ``-1`` once closed (or not a TCP socket)."""
        return self._socket.fileno() if self._socket is not None else -1

    @cached_property
    def _socket(self) -> trio.socket.SocketType | None:
        stream = getattr(self.ws, "_stream", None)
        return stream.socket if isinstance(stream, trio.SocketStream) else None

    def take_broadcast(self, key: str, now: float) -> bytes | None:
        """Take the pending ticks of ``key`` (the newest ``take_limit``, the rest
        counted as dropped) and return their frame's payload; ``None`` when
        there is nothing to send now (the writer is woken if it has work)."""
        subscription = self.subscription
        reader = subscription.readers[key]  # type: ignore[union-attr]
        lag = reader.lag
        if lag <= 0:
            return None
        if self._outbox:
            self.wake_writer()
            return None
        if self._closing is not None or self.ws.closed is not None or self.send_lock.locked():
            return None  # closing, or a frame (ours owed, or a pong) is being written
        items, gap = reader.take(self.take_limit)
        if gap:
            self.ctx.streams.record_drop(key, self.client_type, "conflated", gap)
        if self._lag.observe(now, gap, len(items)):
            self.ctx.streams.record_drop(key, self.client_type, "disconnected", len(items))
            self.end(_SlowClient(f"slow consumer: behind the feed for over {self._lag.timeout:g}s"))
            return None
        messages: list[bytes] = []
        self.taken_ns = self._updates(key, items, messages)
        if not messages:
            return None
        return self._frame_payload(messages)

    def stuck(self, why: str) -> None:
        """A frame stayed owed too long: the writer resets the connection."""
        self.end(_StuckClient(why))

    def end(self, why: Exception) -> None:
        """End the session from outside its tasks: its writer raises ``why``
        (a slow client is closed with 1008, a stuck one reset; anything else is
        logged as a session failure)."""
        if self._ending is None:
            self._ending = why
        self.wake_writer()

    def sent_now(self, now: float, oldest_ns: int) -> None:
        """A frame whose oldest stamp is ``oldest_ns`` was handed to the kernel at ``now``."""
        self._last_sent = now
        if oldest_ns:
            self._latency.observe((time.time_ns() - oldest_ns) / 1e9)

    def _collect(self, subscription: Subscription, messages: list[bytes]) -> int:
        """Append the updates of every Topic with news; return the oldest stamp sent."""
        streams = self.ctx.streams
        client_type = self.client_type
        oldest_ns = 0
        dropped = 0
        most = 0
        for key, items, gap in subscription.take(self.take_limit):
            if gap:
                streams.record_drop(key, client_type, "conflated", gap)
                dropped += gap
            if len(items) > most:
                most = len(items)
            if items:
                stamp = self._updates(key, items, messages)
                if stamp and (not oldest_ns or stamp < oldest_ns):
                    oldest_ns = stamp
        if self._lag.observe(trio.current_time(), dropped, most):
            raise _SlowClient(f"slow consumer: behind the feed for over {self._lag.timeout:g}s")
        return oldest_ns
