"""The WebSocket fan-out fast path (see :mod:`mdactors.engine.fanout`).

Serving every session with its own writer task costs a task wake-up, three
cancel scopes and trio-websocket's framing per message. A session that is
caught up and idle needs none of that: when its Topic publishes, the
:class:`Broadcaster` of that Topic renders the session's frame (encoded once
per tick for every session with the same payload) and writes it straight to
the socket without blocking, in one pass over all such sessions.

A session that falls behind stays here: its pending ticks go out several
per frame, the oldest beyond ``take_limit`` dropped (conflation) — its own
writer, a task switch and trio-websocket's framing per frame, would only
make a loaded server slower. A frame the socket takes only part of (or none
of) is *owed*: the broadcaster holds the connection's send lock (so no other
frame, not even trio-websocket's pong, can be interleaved) and writes the
rest every :data:`OWED_RETRY_S` and on every publish; the session gets
nothing else meanwhile. The session's writer is woken
(:meth:`~mdactors.api.ws.session.OutboxSession.wake_writer`) only for what
it must do itself: send queued replies, or end the session — closed with
1008 when it stayed behind for ``SLOW_CONSUMER_TIMEOUT``, reset when a frame
stayed owed that long.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterable
from typing import Any, Protocol

import trio

from mdactors.engine.fanout import FanOut, FanOuts
from mdactors.engine.topic import Topic

__all__ = ["OWED_RETRY_S", "Broadcaster", "Member", "broadcasts", "text_frame"]

log = logging.getLogger("mdactors.ws")

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


class Member(Protocol):
    """What a :class:`Broadcaster` needs of a session it serves
    (:class:`~mdactors.api.ws.session.OutboxSession` is one)."""

    fast: bool
    """Whether the session's writer is parked and this fast path serves it."""
    fan_out: Broadcaster | None
    taken_ns: int
    """The oldest stamp (ns) in the frame of the last :meth:`take_broadcast`."""
    slow_after: float
    """Seconds a frame may stay owed before the session is closed as slow."""

    @property
    def send_lock(self) -> trio.StrictFIFOLock: ...

    def socket_fd(self) -> int: ...

    def take_broadcast(self, key: str, now: float) -> bytes | None: ...

    def sent_now(self, now: float, oldest_ns: int) -> None: ...

    def wake_writer(self) -> None: ...

    def stuck(self, why: str) -> None: ...

    def end(self, why: Exception) -> None: ...

    def abort(self) -> None: ...


class _Owed:
    """The rest of a partly written frame, since when it is owed, and its oldest stamp."""

    __slots__ = ("oldest_ns", "rest", "since")

    def __init__(self, rest: memoryview, since: float, oldest_ns: int) -> None:
        self.rest = rest
        self.since = since
        self.oldest_ns = oldest_ns


class Broadcaster(FanOut[Member]):
    """The WebSocket fast path of one Topic, and the bytes it owes its members."""

    retry_every = OWED_RETRY_S

    def __init__(self, key: str, topic: Topic[Any]) -> None:
        super().__init__(key, topic)
        self.owed: dict[Member, _Owed] = {}
        """Sessions whose frame was partly written, with its rest (their send lock is held
        by this fan-out's task: every write and lock operation happens in that task)."""
        self._catching_up: set[Member] = set()

    def fan_out(self) -> None:
        self._serve(self.members, trio.current_time())

    def catch_up(self, member: Member) -> None:
        # Served from the fan-out's task, which owns the send locks of owed frames.
        self._catching_up.add(member)
        self.poke()

    def _serve(self, sessions: Iterable[Member], now: float) -> None:
        key = self.key
        frames: dict[int, tuple[bytes, bytes]] = {}
        for session in sessions:
            if not session.fast or session.fan_out is not self:
                continue
            try:
                payload = session.take_broadcast(key, now)
                if payload is None:
                    continue
                # Payloads are cached per tick: the same object for every session that
                # renders the same messages. Keep the payload to compare identity.
                cached = frames.get(id(payload))
                if cached is None or cached[0] is not payload:
                    cached = frames[id(payload)] = (payload, text_frame(payload))
                self._write(session, cached[1], now)
            except Exception as error:  # one session's bug must not end every session
                log.exception("websocket fan-out failed for a session")
                session.end(error)

    def _write(self, session: Member, frame: bytes, now: float) -> None:
        fd = session.socket_fd()
        try:
            written = os.write(fd, frame) if fd >= 0 else -1
        except BlockingIOError:
            written = 0
        except OSError:
            written = -1
        if written == len(frame):
            self.writes += 1
            session.sent_now(now, session.taken_ns)
        elif written >= 0:
            # The frame is owed, and nothing may be written on this connection before it.
            session.send_lock.acquire_nowait()
            self.owed[session] = _Owed(memoryview(frame)[written:], now, session.taken_ns)
        else:
            session.wake_writer()  # the connection is gone: the writer ends the session

    def busy(self) -> bool:
        return bool(self.owed or self._catching_up)

    def retry(self) -> None:
        """Write what is owed, as far as the sockets take it, giving up on stuck
        clients; then serve the sessions catching up."""
        now = trio.current_time()
        for session, owed in list(self.owed.items()):
            fd = session.socket_fd()
            try:
                written = os.write(fd, owed.rest) if fd >= 0 else -1
            except BlockingIOError:
                written = 0
            except OSError:
                written = -1
            if written == len(owed.rest) or written < 0:
                del self.owed[session]
                session.send_lock.release()
                if written > 0:
                    self.writes += 1
                    session.sent_now(now, owed.oldest_ns)
                continue
            owed.rest = owed.rest[written:]
            if now - owed.since >= session.slow_after:
                session.stuck(f"slow consumer: one frame took over {session.slow_after:g}s to send")
        if self._catching_up:
            catching_up, self._catching_up = self._catching_up, set()
            self._serve(catching_up, now)

    def finish(self) -> None:
        # A half-written frame cannot be followed by anything: drop those connections.
        for session in self.owed:
            session.abort()
            session.send_lock.release()
        self.owed.clear()


def broadcasts() -> FanOuts[Broadcaster]:
    """The WebSocket fan-outs of one server."""
    return FanOuts(Broadcaster)
