"""WebSocket framing for the fast path, and the fan-outs of one WebSocket server.

A caught-up session following one symbol is served by that symbol's
:class:`~mdactors.engine.fanout.StreamFanOut` (see :mod:`mdactors.engine.fanout`):
one pass per publish renders the frames once per rendering and writes them to
every session with a non-blocking write. The frames are written as bytes,
beside trio-websocket (which writes only its own pongs and close frames, under
the session's :class:`~mdactors.api.ws.session.SendGate`).
"""

from __future__ import annotations

import struct
from typing import Any

from mdactors.engine.fanout import FanOuts, StreamFanOut

__all__ = ["broadcasts", "text_frame"]


def text_frame(payload: bytes) -> bytes:
    """``payload`` as one unmasked, final WebSocket text frame (RFC 6455 §5.2)."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


def broadcasts() -> FanOuts[StreamFanOut[Any]]:
    """The WebSocket fan-outs of one server."""
    return FanOuts(StreamFanOut)
