"""gRPC on the HTTP port: the gRPC-Web answer of a call, with its status moved to HTTP/2 trailers.

gRPC and gRPC-Web frame messages the same way; they differ in where the
status goes. gRPC-Web puts it in a last frame with flag ``0x80`` (or in the
headers of a trailers-only answer), gRPC in HTTP/2 trailers. Quart cannot
send trailers, so the RPCs answer ``application/grpc`` calls exactly as
gRPC-Web ones (:mod:`mdactors.api.connect.routes`), and :class:`GrpcTrailers`,
an ASGI middleware in front of the app, rewrites the answer on its way out:

- ``http.response.start`` of a 200 ``application/grpc`` answer announces
  trailers (the ASGI ``http.response.trailers`` extension; hypercorn 0.17
  implements it for HTTP/2 when the request says ``TE: trailers``); a
  ``grpc-status`` in its headers (a trailers-only answer) is held back;
- each body chunk is whole frames: a trailer frame is cut from it and
  becomes the trailers;
- when the body ends, the trailers go out: the status held, or INTERNAL if
  the answer ended without one (a handler that crashed mid-stream).

A failed call therefore always has headers, no messages, then trailers: the
regular gRPC shape every client reads (hypercorn cannot send a true
trailers-only HEADERS frame with END_STREAM).
"""

from __future__ import annotations

from mdactors.api.connect.grpc_web import TRAILER, status_headers
from mdactors.api.http.write_guard import AsgiApp, Message, Receive, Scope, Send
from mdactors.api.rpc.status import Code, RpcError

__all__ = ["GRPC_SCOPE", "GrpcTrailers", "split_trailer"]

#: Key in the ASGI scope's ``extensions`` saying the answer's trailer frame will
#: become HTTP/2 trailers (the routes refuse ``application/grpc`` without it).
GRPC_SCOPE = "mdactors.grpc_trailers"
_STATUS_HEADERS = (b"grpc-status", b"grpc-message")


def split_trailer(chunk: bytes) -> tuple[bytes, list[tuple[bytes, bytes]] | None]:
    """``chunk`` (whole frames) without its trailer frame, and that frame's headers.

    ``None`` as headers when the chunk holds no trailer frame.
    """
    position = 0
    while position + 5 <= len(chunk):
        size = int.from_bytes(chunk[position + 1 : position + 5], "big")
        if chunk[position] & TRAILER:
            block = chunk[position + 5 : position + 5 + size].decode("ascii", "replace")
            headers = []
            for line in block.split("\r\n"):
                name, sep, value = line.partition(":")
                if sep:
                    headers.append((name.strip().lower().encode(), value.strip().encode()))
            return chunk[:position], headers
        position += 5 + size
    return chunk, None


def _is_grpc(scope: Scope) -> bool:
    if scope["type"] != "http" or scope.get("http_version") != "2":
        return False
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/grpc" or media.startswith(b"application/grpc+")
    return False


class GrpcTrailers:
    """ASGI middleware: ``application/grpc`` answers over HTTP/2 end with real trailers."""

    def __init__(self, app: AsgiApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_grpc(scope) or "http.response.trailers" not in scope.get("extensions", {}):
            await self.app(scope, receive, send)
            return
        scope["extensions"][GRPC_SCOPE] = {}
        trailers: list[tuple[bytes, bytes]] | None = None
        active = False

        async def grpc_send(message: Message) -> None:
            nonlocal trailers, active
            kind = message["type"]
            if kind == "http.response.start":
                headers = list(message.get("headers", ()))
                content_type = dict(headers).get(b"content-type", b"")
                active = message["status"] == 200 and content_type.startswith(b"application/grpc")
                if not active:
                    await send(message)
                    return
                held = [(name, value) for name, value in headers if name in _STATUS_HEADERS]
                trailers = held or None
                rest = [(name, value) for name, value in headers if name not in _STATUS_HEADERS]
                await send({**message, "headers": rest, "trailers": True})
                return
            if kind != "http.response.body" or not active:
                await send(message)
                return
            body, found = split_trailer(bytes(message.get("body", b"")))
            if found is not None:
                trailers = found
            more = message.get("more_body", False)
            await send({"type": "http.response.body", "body": body, "more_body": more})
            if not more:
                if trailers is None:
                    ended = RpcError(Code.INTERNAL, "the answer ended without a status")
                    trailers = [(k.encode(), v.encode()) for k, v in status_headers(ended).items()]
                await send(
                    {"type": "http.response.trailers", "headers": trailers, "more_trailers": False}
                )

        await self.app(scope, receive, grpc_send)
