"""The WebSocket fan-out fast path: one task per Topic writes caught-up sessions' frames.

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
full. A write that is only partly taken leaves the rest *owed*: the
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

from mdactors.engine.topic import Topic

if TYPE_CHECKING:
    from mdactors.api.ws_session import OutboxSession

__all__ = ["OWED_RETRY_S", "Broadcaster", "Broadcasts", "text_frame"]

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


class Broadcaster:
    """The fast path of one Topic: its member sessions and the bytes it owes them."""

    def __init__(self, key: str, topic: Topic[Any]) -> None:
        self.key = key
        self.topic = topic
        self.members: set[OutboxSession] = set()
        self.owed: dict[OutboxSession, memoryview] = {}
        """Sessions whose frame was partly written, with its rest (their send lock is held)."""
        self.writes = 0
        """Frames written whole by the fast path (for tests and benches)."""

    async def run(self) -> None:
        """Serve the members until none is left (or the Topic closes)."""
        topic = self.topic
        seen = topic.published
        try:
            while self.members or self.owed:
                if topic.published == seen:
                    if topic.closed:
                        for session in self.members:
                            session.wake_writer()
                        return
                    if self.owed:
                        with trio.move_on_after(OWED_RETRY_S):
                            await topic.wakeups.park()
                        self._pay_owed()
                    else:
                        await topic.wakeups.park()
                    continue
                seen = topic.published
                self._pay_owed()
                self._fan_out()
        finally:
            for session in self.owed:
                session.send_lock.release()
            self.owed.clear()

    def _fan_out(self) -> None:
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
            self._write(session, cached[1])

    def _write(self, session: OutboxSession, frame: bytes) -> None:
        fd = session.socket_fd()
        try:
            written = os.write(fd, frame) if fd >= 0 else 0
        except BlockingIOError:
            written = 0
        except OSError:
            written = -1
        if written == len(frame):
            self.writes += 1
            session.sent_now()
            return
        if written > 0:
            # Nothing may be written on this connection before the rest of this frame.
            session.send_lock.acquire_nowait()
            self.owed[session] = memoryview(frame)[written:]
        else:
            session.untake_broadcast()
        session.wake_writer()

    def _pay_owed(self) -> None:
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


class Broadcasts:
    """The broadcasters of one WebSocket server, started on a session's first join."""

    def __init__(self) -> None:
        self.nursery: trio.Nursery | None = None
        """Where broadcaster tasks run; without one, sessions use their own writers."""
        self.by_key: dict[str, Broadcaster] = {}

    def join(self, session: OutboxSession, key: str, topic: Topic[Any]) -> bool:
        """Serve ``session``'s ticks of ``key`` from the fast path; ``False`` when unavailable."""
        nursery = self.nursery
        if nursery is None:
            return False
        broadcaster = self.by_key.get(key)
        if broadcaster is None or broadcaster.topic is not topic:
            broadcaster = self.by_key[key] = Broadcaster(key, topic)
            nursery.start_soon(self._run, broadcaster)
        broadcaster.members.add(session)
        return True

    def leave(self, session: OutboxSession, key: str) -> None:
        """Stop serving ``session`` (it keeps any rest it is owed until written)."""
        broadcaster = self.by_key.get(key)
        if broadcaster is not None:
            broadcaster.members.discard(session)

    async def _run(self, broadcaster: Broadcaster) -> None:
        try:
            await broadcaster.run()
        finally:
            if self.by_key.get(broadcaster.key) is broadcaster:
                del self.by_key[broadcaster.key]
