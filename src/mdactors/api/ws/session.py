"""The session machinery shared by every protocol on the WebSocket port.

An :class:`OutboxSession` is one connection served by two tasks. The reader
hands each client message to the protocol (:meth:`OutboxSession._on_message`),
which queues its replies in the outbox; the outbox is bounded, so a client
that sends faster than it reads is simply not read. The writer waits on the
session's :class:`~mdactors.engine.subscription.Subscription` (or on a kick
from the reader) and sends: outbox first, then the updates the protocol
renders from the pending items of every followed Topic.

The stream policy is the engine's :class:`~mdactors.engine.outlet.Outlet`:
a session that is behind takes the newest ``take_limit`` items of each Topic
(the older ones counted as drops with reason ``conflated``); a frame that
does not go out within ``SLOW_CONSUMER_TIMEOUT`` ends the session, its
pending ticks counted as drops with reason ``disconnected``: closed with 1008
and the reason, or, when the frame is half written (no close frame can
follow it), its TCP connection reset. A slow client only hurts itself.

A caught-up session that follows one Topic (a protocol may allow more:
:attr:`~OutboxSession.broadcast_topics`) parks its writer and is served by
that Topic's :class:`~mdactors.engine.fanout.StreamFanOut` (the fast path;
with several Topics, each one's fan-out writes that Topic's frames):
what WebSocket supplies to it is :meth:`~OutboxSession.render` (the frames of
a batch, encoded once per tick and rendering), :attr:`~OutboxSession.try_write`
(a non-blocking write), the blocking write of the writer task, and how it
says "closed because slow".
"""

from __future__ import annotations

import logging
import math
import socket
import struct
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from contextlib import ExitStack, suppress
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, Protocol

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from mdactors.api.ws.broadcast import text_frame
from mdactors.api.ws.protocol import WS_ERRORS
from mdactors.engine.outlet import Batch, Outlet, SlowConsumer
from mdactors.engine.subscription import StreamClosed, Subscription
from mdactors.engine.topic import Topic

if TYPE_CHECKING:
    from mdactors.api.context import ApiContext
    from mdactors.engine.fanout import FanOuts, StreamFanOut

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_GRACE_S",
    "CLOSE_POLICY",
    "OutboxSession",
    "SendGate",
    "SessionHost",
]

log = logging.getLogger("mdactors.ws")

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_GRACE_S = 2.0
"""How long the closing handshake may take before the connection is dropped."""
_LINGER_RESET = struct.pack("ii", 1, 0)


def _would_block(data: bytes) -> int:
    """The fast path's write on a connection that is not a TCP socket: never."""
    raise BlockingIOError


class SessionHost(Protocol):
    """What a session needs of the server it runs in
    (:class:`~mdactors.api.ws.server.WsServer` is one)."""

    ctx: ApiContext
    broadcasts: FanOuts[StreamFanOut[Any]]
    """The fast paths of this server's Topics (see :attr:`OutboxSession.broadcast`)."""
    slow_disconnects: int
    """Sessions closed as slow consumers, counted by the session that was closed."""


class SendGate:
    """Who may write on the connection now: trio-websocket's send lock, replaced.

    trio-websocket writes its own frames (pongs, the close) under
    ``_stream_lock``; the session installs a gate there that is held by a
    *frame* rather than a task, so the fan-out's task can take it for a
    frame it wrote only in part and the session's writer give it back once
    the rest is written. Nothing else is written on the connection meanwhile:
    whoever takes the gate calls ``on_acquire`` first (the session leaves the
    fast path, whose writes check nothing).
    """

    __slots__ = ("_held", "_lot", "_on_acquire")

    def __init__(self, on_acquire: Callable[[], None]) -> None:
        self._held = False
        self._lot = trio.lowlevel.ParkingLot()
        self._on_acquire = on_acquire

    def locked(self) -> bool:
        """Whether a frame is being written."""
        return self._held

    def acquire_nowait(self) -> None:
        """Take the gate now; ``trio.WouldBlock`` when it is held."""
        if self._held:
            raise trio.WouldBlock
        self._on_acquire()
        self._held = True

    async def acquire(self) -> None:
        """Take the gate, waiting while it is held (a cancellation point, a schedule
        point only when it waits: the write that follows is one)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while self._held:
            await self._lot.park()
        self._on_acquire()
        self._held = True

    def release(self) -> None:
        """Give the gate back (to the next waiter, if any)."""
        self._held = False
        self._lot.unpark()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()


class OutboxSession:
    """One WebSocket connection: an outbox, a reader and a writer task.

    Subclasses speak a protocol through a few hooks: :meth:`_on_message`
    (a client message), :meth:`_updates` (the messages of one Topic's pending
    items), :meth:`_frames` (how messages become frame payloads) and, with a
    finite :attr:`heartbeat_interval`, :meth:`_heartbeat`; with
    :attr:`broadcast`, :meth:`rendering` says which sessions share frames.
    They follow Topics with :meth:`_follow` and run the session with
    :meth:`_serve` then :meth:`_close`.
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
    """Whether a caught-up single-symbol session is served by its symbol's fan-out
    (:class:`~mdactors.engine.fanout.StreamFanOut`) rather than its writer."""
    broadcast_topics = 1
    """Most Topics a session may follow and still be served by their fan-outs, each
    writing its own Topic's frames (more than one only for a protocol whose frames
    of different Topics are independent)."""

    def __init__(self, server: SessionHost, ws: WebSocketConnection) -> None:
        self.server = server
        self.ctx = server.ctx
        self.ws = ws
        self.subscription: Subscription | None = None
        self.outlet = Outlet(
            self.ctx.streams,
            self.ctx.metrics.publication_latency.labels(self.client_type),
            self.client_type,
            None,
            self.ctx.settings.slow_consumer_timeout,
        )
        """The stream policy: conflation, the slow decision, drops and latency."""
        self._stack: ExitStack | None = None
        self._outbox: deque[bytes] = deque()
        self._space = trio.lowlevel.ParkingLot()
        self._kick: trio.CancelScope | None = None
        self._closing: tuple[int, str] | None = None
        self._detached = False
        self.sent_at = 0.0
        """When (trio clock) bytes were last handed to the kernel (for the heartbeat)."""
        self.fan_outs: list[StreamFanOut[Any]] = []
        """The fan-outs of the Topics this session follows, if it may be served fast."""
        self.fast = False
        """Whether the writer is parked and the fast path serves this session."""
        self.gate = SendGate(self.wake_writer)
        """Who writes on the connection now (installed as trio-websocket's send lock)."""
        ws._stream_lock = self.gate  # type: ignore[assignment]
        self._owed: tuple[memoryview, Batch] | None = None
        self.half_written = False
        """Whether a frame is half written (the writer owes its rest, or the write was cut)."""
        sock = self._socket
        self.try_write: Callable[[bytes], int] = (
            sock._sock.send if sock is not None else _would_block  # type: ignore[attr-defined]
        )
        """The fast path's write: ``send`` on the kernel socket under trio's (non-blocking)."""

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
        if self.fast:
            self.fast = False
            for fan_out in self.fan_outs:
                fan_out.release(self)
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
        self.subscription = self.outlet.subscription = subscription
        if self.broadcast and len(topics) <= self.broadcast_topics:
            for key, topic in topics.items():
                fan_out = self.server.broadcasts.join(self, key, topic)
                if fan_out is not None:
                    self.fan_outs.append(fan_out)

    def _release(self) -> None:
        self.wake_writer()
        for fan_out in self.fan_outs:
            self.server.broadcasts.leave(self, fan_out.key)
        self.fan_outs = []
        if self._stack is not None:
            self._stack.close()
        self._stack = None
        self.subscription = self.outlet.subscription = None

    # ------------------------------------------------------------------ protocol hooks

    def _on_message(self, data: str | bytes) -> bool:
        """Handle one client message; return whether to go on reading."""
        raise NotImplementedError

    def _updates(self, key: str, items: list[Any], messages: list[bytes]) -> None:
        """Append the messages of ``key``'s pending ``items``."""
        raise NotImplementedError

    def _frames(self, messages: list[bytes]) -> Iterable[bytes]:
        """The payloads of the text frames carrying ``messages`` (one frame per message
        by default)."""
        return messages

    def _heartbeat(self) -> bytes:
        """The message sent after :attr:`heartbeat_interval` idle seconds."""
        raise NotImplementedError

    def rendering(self) -> Hashable:
        """Which sessions :meth:`render` the same frames (see
        :meth:`~mdactors.engine.fanout.FastStream.rendering`): this one alone unless
        the protocol says more."""
        return self

    # ------------------------------------------------------------------ run

    async def _serve(self) -> None:
        """Run the reader and the writer until either side ends the session."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_loop)
                await self._write_guarded()
                nursery.cancel_scope.cancel()
        finally:
            if self.half_written:  # nothing can follow a half-written frame
                self._closing = None
                self.abort()

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
        except SlowConsumer as slow:
            self.server.slow_disconnects += 1
            log.warning(
                "closing slow websocket client",
                extra={"event": "ws_slow_client", "why": str(slow), "client": self.client_type},
            )
            # Half written: the connection is reset when the session ends (see _serve).
            self._closing = None if self.half_written else (CLOSE_POLICY, str(slow))
        except (ConnectionClosed, OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            self._closing = None

    def abort(self) -> None:
        """Reset the TCP connection now (RST), discarding what the kernel still holds.

        trio-websocket 0.12 has no public abort; its connection keeps the
        transport in ``_stream``. Without it, the connection is closed the
        ordinary way when the handler returns.
        """
        sock = self._socket
        if sock is not None and sock.fileno() >= 0:
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            sock.close()

    # ------------------------------------------------------------------ writer

    async def _write_loop(self) -> None:
        outlet = self.outlet
        self.sent_at = trio.current_time()
        while self._closing is None and not self._detached:
            if self._owed is not None:
                rest, batch = self._owed
                self._owed = None
                await outlet.write(partial(self._write_owed, rest), batch)
                self.sent_at = trio.current_time()
                continue
            subscription = self.subscription
            if not self._outbox and not (subscription is not None and subscription.pending()):
                await self._idle(subscription)
                continue
            messages = list(self._outbox)
            self._outbox.clear()
            self._space.unpark_all()
            batch = outlet.take(self.take_limit)
            for key, items in batch:
                self._updates(key, items, messages)
            if messages:
                data = b"".join(text_frame(payload) for payload in self._frames(messages))
                await outlet.write(partial(self._write, data), batch)
                self.sent_at = trio.current_time()

    async def _idle(self, subscription: Subscription | None) -> None:
        """Wait for a kick or the heartbeat, and for news unless the fast path serves it."""
        heartbeat = self.heartbeat_interval
        fast = self._served_fast(subscription)
        with trio.CancelScope() as kick:
            self._kick = kick
            with trio.move_on_at(self.sent_at + heartbeat) as idle:
                try:
                    if subscription is None:
                        await trio.sleep_forever()
                    elif fast:
                        self.fast = True
                        for fan_out in self.fan_outs:
                            fan_out.catch_up(self)  # it writes the next ticks from its task
                        await trio.sleep_forever()
                    else:
                        await subscription.wait()
                except StreamClosed as error:
                    self.request_close(CLOSE_GOING_AWAY, WS_ERRORS(error).message)
        self._kick = None
        self.wake_writer()  # leave the fast path: sent_at is now up to date
        # The fast path may have sent since the deadline was set.
        if idle.cancelled_caught and trio.current_time() - self.sent_at >= heartbeat:
            self._send_later(self._heartbeat())

    def _served_fast(self, subscription: Subscription | None) -> bool:
        """Whether the fast path can serve the stream (a fan-out for each Topic, open,
        nothing being written)."""
        return (
            subscription is not None
            and len(self.fan_outs) == len(subscription.topics)
            and self._owed is None
            and not self.gate.locked()
            and not subscription.stopped
            and not any(topic.closed for topic in subscription.topics.values())
        )

    async def _write(self, data: bytes) -> None:
        """The blocking write: ``data`` whole, nothing else on the connection meanwhile."""
        await self.gate.acquire()
        try:
            if self.ws.closed is not None:
                raise ConnectionClosed(self.ws.closed)
            await self._send_all(memoryview(data))
        finally:
            if not self.half_written:
                self.gate.release()

    async def _write_owed(self, rest: memoryview) -> None:
        """The rest of a frame the fast path wrote in part (it holds the gate for it)."""
        await self._send_all(rest)
        self.gate.release()

    async def _send_all(self, view: memoryview) -> None:
        sock = self._socket
        if sock is None:  # not a TCP socket: how much a cut write sent is unknown
            self.half_written = True
            await self.ws._stream.send_all(view)
            self.half_written = False
            return
        # Tried at once (no schedule point when the kernel takes it all, as on the fast
        # path); waits only while the socket is full.
        while view:
            try:
                sent = self.try_write(view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
                continue
            view = view[sent:]
            self.half_written = bool(view)

    # ------------------------------------------------------------------ fast path

    @cached_property
    def _socket(self) -> trio.socket.SocketType | None:
        stream = getattr(self.ws, "_stream", None)
        return stream.socket if isinstance(stream, trio.SocketStream) else None

    def render(self, key: str, items: list[Any]) -> bytes | None:
        """The frames carrying ``key``'s ``items``, ``None`` when they carry nothing."""
        messages: list[bytes] = []
        self._updates(key, items, messages)
        if not messages:
            return None
        return b"".join(text_frame(payload) for payload in self._frames(messages))

    def owe(self, rest: memoryview, batch: Batch) -> None:
        """The fast path wrote part of a frame: hold the gate until the writer sends ``rest``."""
        self.gate.acquire_nowait()
        self.half_written = True
        self._owed = (rest, batch)
