"""HTTP/2 trailers that end their stream, for hypercorn 0.17.3.

hypercorn advertises the ASGI ``http.response.trailers`` extension on
HTTP/2 (``TRAILERS_VERSIONS``) but sends trailers wrongly there
(``hypercorn.protocol.h2.H2Protocol.stream_send``): the trailers' HEADERS
frame goes out at once, ahead of body bytes still queued in the stream's
buffer, and without END_STREAM; the stream then ends with an empty DATA frame
carrying END_STREAM. RFC 9113 §8.1 wants the trailers last and ending the
stream, and gRPC clients reject the rest (grpcio: "Stream removed (Data frame
with END_STREAM flag received)").

:func:`fix_h2_trailers` replaces that one case: wait until the stream's
buffered body has been handed to h2 (the buffer's ``drain``), then send the
trailers with END_STREAM. The empty DATA frame hypercorn tries afterwards
hits a closed stream, which its sender already treats as a stream that
ended. Every other event goes to hypercorn's own ``stream_send``.
hypercorn is pinned (0.17.3); ``tests/api/connect/test_grpc_http.py`` fails if this
stops holding.
"""

from __future__ import annotations

from typing import Any

import h2.exceptions
from hypercorn.protocol.events import Trailers
from hypercorn.protocol.h2 import H2Protocol

__all__ = ["fix_h2_trailers"]

_ORIGINAL = H2Protocol.stream_send


async def _stream_send(self: H2Protocol, event: Any) -> None:
    if not isinstance(event, Trailers):
        await _ORIGINAL(self, event)
        return
    buffer = self.stream_buffers.get(event.stream_id)
    if buffer is not None:
        await buffer.drain()
    try:
        self.connection.send_headers(event.stream_id, event.headers, end_stream=True)
    except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
        return  # the client reset the stream or left meanwhile
    await self._flush()


def fix_h2_trailers() -> None:
    """Make hypercorn's HTTP/2 trailers come last and end their stream (idempotent)."""
    H2Protocol.stream_send = _stream_send  # type: ignore[method-assign]
