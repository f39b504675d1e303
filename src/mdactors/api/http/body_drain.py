"""ASGI middleware: a request body left unread by an early answer is drained.

A route may answer before the body was read: the admin guard's 401, a 404,
405 or 415, a 413 from the size limit. The client has usually not finished
sending (a 2 MB POST fills the socket buffers). Under hypercorn nobody reads
the rest once the application stops: the server's queue to the application
fills, the connection neither ends the request nor closes, and the client's
next request on that keep-alive connection waits until it times out.

So before the last bytes of such a response are sent, :class:`DrainBody`
reads and discards the rest of the body (at most ``limit`` bytes, for at
most ``timeout`` seconds): the client finishes its upload, reads the answer
and keeps the connection. Past either bound it goes on reading only while
the answer is sent; the request then never ended, so the server closes the
connection after the answer (the client sees the close, never a hang).
"""

from __future__ import annotations

import trio

from mdactors.api.http.write_guard import AsgiApp, Message, Receive, Scope, Send

__all__ = ["DRAIN_LIMIT_BYTES", "DRAIN_TIMEOUT_S", "DrainBody"]

DRAIN_LIMIT_BYTES = 16 * 1024 * 1024
"""Most unread body bytes discarded to keep a connection; past them it is closed."""
DRAIN_TIMEOUT_S = 10.0
"""Longest the rest of a body is waited for; past it the connection is closed."""


class _Request:
    """Whether the request body has ended, seen through every ``receive`` of the app."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.ended = trio.Event()

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.ended.set()
        return message

    async def discard(self, limit: float) -> None:
        """Read and drop body chunks until the body ends or ``limit`` bytes are dropped.

        The application may still be reading too (its own receiver task): this
        stops as soon as the body ends, whoever read its last chunk.
        """
        async with trio.open_nursery() as nursery:

            async def read() -> None:
                dropped = 0
                while not self.ended.is_set() and dropped <= limit:
                    dropped += len((await self.receive()).get("body", b""))
                nursery.cancel_scope.cancel()

            nursery.start_soon(read)
            await self.ended.wait()
            nursery.cancel_scope.cancel()


class DrainBody:
    """Wraps an ASGI app so an answer sent before the body was read never hangs its
    connection (see the module docstring)."""

    def __init__(
        self, app: AsgiApp, limit: int = DRAIN_LIMIT_BYTES, timeout: float = DRAIN_TIMEOUT_S
    ) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = _Request(receive)

        async def finishing_send(message: Message) -> None:
            last = message["type"] == "http.response.body" and not message.get("more_body", False)
            if not last or request.ended.is_set():
                await send(message)
                return
            with trio.move_on_after(self.timeout):
                await request.discard(self.limit)
            if request.ended.is_set():
                await send(message)
                return
            # Too much, or too slow: keep the server's queue moving while the answer
            # goes out; the server then closes the connection (the request never ended).
            async with trio.open_nursery() as nursery:
                nursery.start_soon(request.discard, float("inf"))
                await send(message)
                nursery.cancel_scope.cancel()

        await self.app(scope, request.receive, finishing_send)
