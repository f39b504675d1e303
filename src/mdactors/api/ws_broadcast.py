"""The WebSocket fan-out fast path (see :mod:`mdactors.engine.fanout`).

Serving every session with its own writer task costs a task wake-up, three
cancel scopes and trio-websocket's framing per message. A session that is
caught up and idle needs none of that: when its Topic publishes, the
:class:`Broadcaster` of that Topic renders the session's frame (encoded once
per tick for every session with the same payload) and writes it straight to
the socket without blocking, in one pass over all such sessions.

Anything else goes back to the session's own writer, which is woken
(:meth:`~mdactors.api.ws_session.OutboxSession.wake_writer`): queued replies,
more pending ticks than fit in one frame, a close in progress, a send under
way in trio-websocket (a pong, a close frame), or a socket whose buffer is
full. A frame the socket takes only part of (or none of) is *owed*: the
broadcaster holds the connection's send lock (so no other frame can be
interleaved) until it has written the rest, retrying every
:data:`OWED_RETRY_S`; meanwhile the session's writer waits on that lock, so a
client that stops reading is still closed after ``SLOW_CONSUMER_TIMEOUT``.
"""

from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING, Any

import trio

from mdactors.engine.fanout import FanOut, FanOuts
from mdactors.engine.topic import Topic

if TYPE_CHECKING:
    from mdactors.api.ws_session import OutboxSession

__all__ = ["OWED_RETRY_S", "Broadcaster", "broadcasts", "text_frame"]

OWED_RETRY_S = 0.02
"""How often the rest of a partly written frame is retried."""


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


class Broadcaster(FanOut["OutboxSession"]):
    """The WebSocket fast path of one Topic, and the bytes it owes its members."""

    retry_every = OWED_RETRY_S

    def __init__(self, key: str, topic: Topic[Any]) -> None:
        super().__init__(key, topic)
        self.owed: dict[OutboxSession, memoryview] = {}
        """Sessions whose frame was partly written, with its rest (their send lock is held)."""

    def fan_out(self) -> None:
        key = self.key
        frames: dict[int, tuple[bytes, bytes]] = {}
        now = trio.current_time()
        for session in self.members:
            if not session.fast:
                continue
            payload = session.take_broadcast(key, now)
            if payload is None:
                continue
            # Payloads are cached per tick: the same object for every session that
            # renders the same messages. Keep the payload to compare identity.
            cached = frames.get(id(payload))
            if cached is None or cached[0] is not payload:
                cached = frames[id(payload)] = (payload, text_frame(payload))
            self._write(session, cached[1], now)

    def _write(self, session: OutboxSession, frame: bytes, now: float) -> None:
        fd = session.socket_fd()
        try:
            written = os.write(fd, frame) if fd >= 0 else -1
        except BlockingIOError:
            written = 0
        except OSError:
            written = -1
        if written == len(frame):
            self.writes += 1
            session.sent_now(now)
            return
        if written >= 0:
            # The frame is owed, and nothing may be written on this connection before it.
            session.send_lock.acquire_nowait()
            self.owed[session] = memoryview(frame)[written:]
        session.wake_writer()

    def busy(self) -> bool:
        return bool(self.owed)

    def retry(self) -> None:
        """Write what is owed, as far as the sockets take it."""
        for session, rest in list(self.owed.items()):
            fd = session.socket_fd()
            try:
                written = os.write(fd, rest) if fd >= 0 else -1
            except BlockingIOError:
                continue
            except OSError:
                written = -1
            if written == len(rest) or written < 0:
                del self.owed[session]
                session.send_lock.release()
            else:
                self.owed[session] = rest[written:]

    def finish(self) -> None:
        for session in self.owed:
            session.send_lock.release()
        self.owed.clear()


def broadcasts() -> FanOuts[Broadcaster]:
    """The WebSocket fan-outs of one server."""
    return FanOuts(Broadcaster)
