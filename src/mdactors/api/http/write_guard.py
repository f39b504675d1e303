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
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import suppress
from typing import Any, NoReturn

import trio

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

    __slots__ = ("guarded", "scope", "send")

    def __init__(self, scope: Scope, send: Send) -> None:
        self.scope = scope
        self.send = send
        self.guarded = False


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
        while True:
            now = trio.current_time()
            wake = now + timeout
            while inflight:
                writes, since = next(iter(inflight.items()))
                if now - since < timeout:
                    wake = since + timeout
                    break
                del inflight[writes]
                self._reset(writes, now - since)
            await trio.sleep_until(wake)

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
        scope = writes.scope
        client = scope.get("client")
        log.warning(
            "resetting a stuck HTTP connection",
            extra={
                "event": "http_slow_client",
                "path": scope.get("path", "")[:200],
                "client": f"{client[0]}:{client[1]}" if client else "",
                "why": f"one write was pending for {stuck_for:.1f}s",
            },
        )
        with suppress(OSError):
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        # Wakes the task blocked in the write with ClosedResourceError.
        stream.socket.close()


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
