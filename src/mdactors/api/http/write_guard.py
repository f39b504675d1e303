"""A write timeout for streamed HTTP responses (SSE, Connect streams).

hypercorn 0.17 has no write timeout, and its trio worker writes every chunk
inside a *shielded* cancel scope (``hypercorn.trio.tcp_server.TCPServer.protocol_send``).
A client that stops reading without closing (its receive buffer full) leaves
the request's task blocked in ``send_all`` for as long as it keeps the
connection open: a ``move_on_after`` around the ASGI ``send``, quart's
``RESPONSE_TIMEOUT`` or a cancelled request all expire without effect, so a
streaming body never resumes and never releases its stream slot. Only closing
the socket ends that wait.

:class:`WriteGuard` wraps the ASGI application. A streaming view opts in with
:func:`guard_writes`; from then on each ``send`` of that response is timed, and
one watchdog task (:meth:`WriteGuard.watch`) resets the connection of any send
still pending after ``timeout``. The blocked write then fails, hypercorn
reports ``http.disconnect``, the ``send`` returns, and the view's generator
sees its ``yield`` took longer than the timeout: it counts what the client
lost and ends, which releases the slot (quart-trio also cancels the request).

Over HTTP/2 (h2c: gRPC, Connect, SSE on the HTTP port) a client that stops
reading stops reopening its stream's flow-control window, and hypercorn
0.17's ``StreamBuffer`` then takes every chunk without ever blocking (its
high-water wait is released by the sender's empty ``pop`` of a shut
window): the buffer grows without bound and no send is ever pending. So a
guarded send on HTTP/2 also waits, still timed, while that buffer holds more
than hypercorn's high-water mark; and a stuck HTTP/2 send ends only its own
stream (RST_STREAM, CANCEL), not the connection's other streams. Only when
even that frame cannot go out within the timeout is the connection reset.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import suppress
from typing import Any, NoReturn

import h2.errors
import h2.exceptions
import trio
from hypercorn.protocol.h2 import BUFFER_HIGH_WATER, H2Protocol

__all__ = ["WriteGuard", "guard_writes"]

log = logging.getLogger("mdactors.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Key of the per-request handle in the ASGI scope's ``extensions``.
EXTENSION = "mdactors.write_guard"
#: SO_LINGER on, zero seconds: ``close`` resets the connection and drops what
#: the kernel still holds for the client instead of trying to deliver it.
_LINGER_RESET = struct.pack("ii", 1, 0)


class _Writes:
    """One request's sends, as the guard sees them."""

    __slots__ = ("guarded", "h2", "scope", "send")

    def __init__(self, scope: Scope, send: Send) -> None:
        self.scope = scope
        self.send = send
        self.guarded = False
        self.h2 = _h2_stream(send) if scope.get("http_version") == "2" else None
        """The HTTP/2 connection and stream id of the request, when it is one."""

    async def backlog_drained(self) -> None:
        """Wait while the request's HTTP/2 stream holds more unsent body than
        hypercorn's high-water mark (the back-pressure hypercorn does not apply)."""
        if self.h2 is None:
            return
        protocol, stream_id = self.h2
        buffer = protocol.stream_buffers.get(stream_id)
        if buffer is not None and len(buffer.buffer) >= BUFFER_HIGH_WATER:
            await buffer.drain()


def guard_writes(scope: Scope) -> bool:
    """Put the response of the request with ``scope`` under the write timeout.

    For streamed responses, whose chunks are small: a whole response sent in
    one piece to a slow but reading client may legitimately take longer.
    Returns whether a :class:`WriteGuard` serves the request (not under
    quart's test client, for one).
    """
    writes = scope.get("extensions", {}).get(EXTENSION)
    if writes is None:
        return False
    writes.guarded = True
    return True


class WriteGuard:
    """ASGI middleware: resets the connection of a guarded response whose send
    has been pending for ``timeout`` seconds.

    :meth:`watch` must run (in the server's nursery) while the application is
    served; without it nothing is ever reset.
    """

    def __init__(self, app: AsgiApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout
        # Sends in progress → when each started. Re-inserted per send, so the
        # dict is ordered by start time: the oldest is always first.
        self._inflight: dict[_Writes, float] = {}
        self._cannot_reset_logged = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        writes = _Writes(scope, send)
        scope.setdefault("extensions", {})[EXTENSION] = writes
        inflight = self._inflight

        async def timed_send(message: Message) -> None:
            if not writes.guarded:
                await send(message)
                return
            inflight[writes] = trio.current_time()
            try:
                await send(message)
                if message["type"] == "http.response.body":
                    await writes.backlog_drained()
            finally:
                inflight.pop(writes, None)

        await self.app(scope, receive, timed_send)

    async def watch(self) -> NoReturn:
        """Reset the connection of every send pending for ``timeout``; runs until cancelled.

        Wakes when the oldest send in progress would expire (or every
        ``timeout`` when none is), so its cost does not grow with the number
        of open streams.
        """
        inflight = self._inflight
        timeout = self.timeout
        async with trio.open_nursery() as nursery:
            while True:
                now = trio.current_time()
                wake = now + timeout
                while inflight:
                    writes, since = next(iter(inflight.items()))
                    if now - since < timeout:
                        wake = since + timeout
                        break
                    del inflight[writes]
                    if writes.h2 is not None:
                        nursery.start_soon(self._reset_h2_stream, writes, now - since)
                    else:
                        self._reset(writes, now - since)
                await trio.sleep_until(wake)

    async def _reset_h2_stream(self, writes: _Writes, stuck_for: float) -> None:
        """End the stuck HTTP/2 stream alone: RST_STREAM (CANCEL), its buffer dropped
        (which returns the application's send); the connection is reset instead if
        even that frame cannot go out within the timeout."""
        assert writes.h2 is not None
        protocol, stream_id = writes.h2
        _log_reset(writes, stuck_for, "stream")
        with suppress(h2.exceptions.ProtocolError, KeyError):
            protocol.connection.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        buffer = protocol.stream_buffers.get(stream_id)
        if buffer is not None:
            await buffer.close()
        # hypercorn writes to the socket in a shielded scope: a flush into a full
        # socket cannot be cancelled, only ended by closing the socket.
        flushed = trio.Event()

        async def flush() -> None:
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await protocol._flush()
            flushed.set()

        async with trio.open_nursery() as flushing:
            flushing.start_soon(flush)
            with trio.move_on_after(self.timeout):
                await flushed.wait()
                return
            self._reset(writes, stuck_for + self.timeout)

    def _reset(self, writes: _Writes, stuck_for: float) -> None:
        stream = _connection_stream(writes.send)
        if stream is None:
            if not self._cannot_reset_logged:
                self._cannot_reset_logged = True
                log.error(
                    "cannot reset a stuck HTTP connection: the server's connection is not "
                    "reachable from its ASGI send (hypercorn changed?); stuck streams keep "
                    "their slots",
                    extra={"event": "http_write_guard_unavailable"},
                )
            return
        _log_reset(writes, stuck_for, "connection")
        with suppress(OSError):
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        # Wakes the task blocked in the write with ClosedResourceError.
        stream.socket.close()


def _log_reset(writes: _Writes, stuck_for: float, what: str) -> None:
    scope = writes.scope
    client = scope.get("client")
    log.warning(
        f"resetting a stuck HTTP {what}",
        extra={
            "event": "http_slow_client",
            "path": scope.get("path", "")[:200],
            "client": f"{client[0]}:{client[1]}" if client else "",
            "why": f"one write was pending for {stuck_for:.1f}s",
        },
    )


def _h2_stream(send: Send) -> tuple[H2Protocol, int] | None:
    """hypercorn's HTTP/2 connection and the stream id behind an ASGI ``send``
    (``HTTPStream.app_send``, whose ``send`` is ``H2Protocol.stream_send``), or None."""
    stream = getattr(send, "__self__", None)
    protocol = getattr(getattr(stream, "send", None), "__self__", None)
    stream_id = getattr(stream, "stream_id", None)
    if isinstance(protocol, H2Protocol) and isinstance(stream_id, int):
        return protocol, stream_id
    return None


def _connection_stream(send: Send) -> trio.SocketStream | None:
    """The TCP stream under hypercorn's ASGI ``send``, or None.

    hypercorn 0.17's trio worker gives the application ``HTTPStream.app_send``;
    that object's ``send`` is the protocol's (``H11Protocol`` or
    ``H2Protocol``) ``stream_send``, whose ``send`` is
    ``TCPServer.protocol_send``, and the ``TCPServer`` holds the connection's
    ``stream``. None of this is public API (no ASGI extension exposes the
    connection), hence the careful walk; ``tests/api/http/test_http_slow_clients.py``
    fails if it stops finding the stream.
    """
    owner = getattr(send, "__self__", None)
    for _ in range(4):
        stream = getattr(owner, "stream", None)
        if isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        if isinstance(stream, trio.SocketStream):
            return stream
        owner = getattr(getattr(owner, "send", None), "__self__", None)
    return None
