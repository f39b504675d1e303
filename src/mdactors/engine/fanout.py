"""The streaming fast path's skeleton: one task per Topic serves its caught-up streams.

Serving every stream with its own task costs a task switch, cancel scopes and
a transport's general-purpose framing per message. A stream that is caught
up and idle needs none of that: its task parks, the stream joins the
:class:`FanOut` of its Topic, and on every publish that one task renders and
writes the update of every member in a single synchronous pass (encoded once
per tick for all members that render the same bytes).

A member that cannot be served at once — a backlog, a full window or socket
buffer, anything in flight on its connection — is handed back to its own task
(:meth:`Member.wake_writer`), which serves it the ordinary way until it is
caught up again. Transports subclass :class:`FanOut` with the pass itself
(:mod:`mdactors.api.grpc.fanout`), or use :class:`StreamFanOut`, the pass of
every stream whose transport writes bytes to a socket (:class:`FastStream`:
the WebSocket sessions, :mod:`mdactors.api.ws`).

:class:`StreamFanOut` keeps one cursor for all its caught-up members: they
are grouped by *rendering* (members of one rendering write the same bytes
for the same ticks), so a pass renders each group's bytes once and writes
them to every member in a tight loop of non-blocking writes; bookkeeping
(cursors, drops, publication latency) is done once per group and pass. A
member whose write would block (or takes only part of the bytes) goes back
to its own task, which finishes or redoes the write under the stream
outlet's slow-consumer decision (:meth:`mdactors.engine.outlet.Outlet.write`)
and rejoins once caught up.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from typing import Any, Generic, Protocol, TypeVar

import trio

from mdactors.engine.outlet import Outlet
from mdactors.engine.topic import Reader, Topic

__all__ = ["FanOut", "FanOuts", "FastStream", "Member", "StreamFanOut"]

log = logging.getLogger("mdactors.fanout")


class Member(Protocol):
    """A stream a :class:`FanOut` may serve."""

    fast: bool
    """Whether its own task is parked and the fan-out serves it."""

    def wake_writer(self) -> None:
        """Hand the stream back to its own task (clears :attr:`fast`)."""


M = TypeVar("M", bound=Member)


class FanOut(ABC, Generic[M]):
    """The fast path of one Topic: its members, served on every publish."""

    retry_every = math.inf
    """Seconds between :meth:`retry` calls while :meth:`busy` (besides every publish)."""

    def __init__(self, key: str, topic: Topic[Any]) -> None:
        self.key = key
        self.topic = topic
        self.members: set[M] = set()
        self.writes = 0
        """Messages (or frames) this fan-out wrote, for tests and benches."""
        self._lot = trio.lowlevel.ParkingLot()

    def poke(self) -> None:
        """Wake the task before the next publish (work for :meth:`retry` appeared)."""
        self._lot.unpark_all()

    async def run(self) -> None:
        """Serve the members until none is left and nothing :meth:`busy`, or the Topic closes."""
        topic = self.topic
        seen = topic.published
        topic.attach(self._lot)
        try:
            # Members that joined (or asked to catch up) before this task started.
            self.retry()
            self.fan_out()
            while self.members or self.busy():
                if topic.published == seen:
                    if topic.closed:
                        for member in self.members:
                            member.wake_writer()
                        return
                    with trio.move_on_after(self.retry_every if self.busy() else math.inf):
                        await self._lot.park()
                    self.retry()
                    continue
                seen = topic.published
                self.retry()
                self.fan_out()
        finally:
            topic.detach(self._lot)
            self.finish()

    @abstractmethod
    def fan_out(self) -> None:
        """Serve every member with :attr:`Member.fast` set (news was published)."""

    @abstractmethod
    def catch_up(self, member: M) -> None:
        """Serve one member soon (it joined, or came back, with news pending); called
        from the member's own task."""

    def busy(self) -> bool:
        """Whether work is left that does not wait for a publish (see :meth:`retry`)."""
        return False

    def retry(self) -> None:
        """Go on with that work."""

    def finish(self) -> None:
        """The task ends: give back whatever the fan-out still holds."""

    def leave(self, member: M) -> None:
        """Stop serving ``member``."""
        self.members.discard(member)


class FastStream(Member, Protocol):
    """What a :class:`StreamFanOut` needs of a stream: the transport's own part
    (render, a non-blocking write, taking over a half-written write) and the
    stream's :class:`~mdactors.engine.outlet.Outlet`.

    Its :meth:`~Member.wake_writer` must call :meth:`StreamFanOut.release`, and
    so must anything that writes on the stream beside the fan-out (the fan-out
    checks nothing before it writes).
    """

    outlet: Outlet
    """The stream's outlet (its cursors, drops and latency)."""
    take_limit: int
    """Most items of one Topic in one write; the older ones are dropped (``conflated``)."""
    sent_at: float
    """When (trio clock) bytes of the stream were last handed to the kernel; the
    fan-out sets it when it releases the stream."""
    try_write: Callable[[bytes], int]
    """Write without blocking, as ``send`` on a non-blocking socket does: the number of
    bytes taken (``0`` or ``BlockingIOError`` when it would block, another ``OSError``
    once closed)."""

    def rendering(self) -> Hashable:
        """A key equal for the streams that :meth:`render` the same bytes for the same
        items, and so are of one ``client_type`` and ``take_limit`` (read when the
        stream joins a pass; the stream itself when it shares with none)."""
        ...

    def render(self, key: str, items: list[Any]) -> bytes | None:
        """The bytes carrying ``key``'s ``items`` (``None``: nothing to send for them)."""
        ...

    def owe(self, rest: memoryview, batch: list[tuple[str, list[Any]]]) -> None:
        """Only part of the bytes carrying ``batch`` were taken: the stream's task
        writes ``rest`` before anything else (its slow decision applies)."""
        ...


S = TypeVar("S", bound=FastStream)


class _Group(Generic[S]):
    """Members of one rendering, served up to :attr:`cursor` (their readers are
    left where they were and set on release: a pass touches no member's state)."""

    __slots__ = ("cursor", "members", "sent_at")

    def __init__(self, cursor: int) -> None:
        self.cursor = cursor
        self.members: dict[S, Callable[[bytes], int]] = {}
        """Each member and its ``try_write``."""
        self.sent_at = -math.inf


class StreamFanOut(FanOut[S]):
    """The fast path of one Topic for byte streams: one cursor, one render per rendering."""

    def __init__(self, key: str, topic: Topic[Any]) -> None:
        super().__init__(key, topic)
        self._reader: Reader[Any] = topic.reader(from_latest=False)
        self.groups: dict[Hashable, _Group[S]] = {}
        """The members caught up and served by each pass, by rendering."""
        self._placed: dict[S, tuple[_Group[S], Reader[Any]]] = {}
        self._joining: dict[S, None] = {}

    @property
    def cursor(self) -> int:
        """The Topic position the passes have served up to."""
        return self._reader.cursor

    def catch_up(self, member: S) -> None:
        # The member's task parks with nothing pending: it joins at the next pass.
        self._joining[member] = None

    def release(self, member: S) -> None:
        """Stop serving ``member`` in passes (its own task takes over), its cursor
        and :attr:`~FastStream.sent_at` brought up to date."""
        self._joining.pop(member, None)
        placed = self._placed.pop(member, None)
        if placed is not None:
            group, reader = placed
            del group.members[member]
            reader.cursor = group.cursor
            member.sent_at = max(member.sent_at, group.sent_at)

    def leave(self, member: S) -> None:
        self.release(member)
        super().leave(member)

    def _admit(self) -> None:
        """Group the joining members caught up to :attr:`cursor`; the others keep
        waiting (ahead: they took the news themselves) or go back to their task."""
        cursor = self.cursor
        joining, self._joining = self._joining, {}
        waiting: dict[S, None] = {}
        for member in joining:
            if not member.fast:
                continue
            reader = member.outlet.subscription.readers[self.key]  # type: ignore[union-attr]
            if reader.cursor == cursor:
                rendering = member.rendering()
                group = self.groups.get(rendering)
                if group is None:
                    group = self.groups[rendering] = _Group(cursor)
                group.members[member] = member.try_write
                self._placed[member] = (group, reader)
            elif reader.cursor > cursor and reader.cursor == self.topic.published:
                waiting[member] = None
            else:
                member.wake_writer()
        self._joining.update(waiting)

    def fan_out(self) -> None:
        if self._joining:
            self._admit()
        items, gap = self._reader.take(self.topic.capacity)
        if items:
            now = trio.current_time()
            for rendering, group in list(self.groups.items()):
                if group.members:
                    self._serve(group, items, gap, now)
                else:
                    del self.groups[rendering]
        if self._joining:
            self._admit()

    def _serve(self, group: _Group[S], items: list[Any], gap: int, now: float) -> None:
        """Write one rendering's bytes for ``items`` to every member of ``group``."""
        members = group.members
        first = next(iter(members))
        taken = items[-first.take_limit :]
        try:
            data = first.render(self.key, taken)
        except Exception:  # one rendering's bug must not end every stream: each task renders
            log.exception("fan-out failed to render", extra={"topic": self.key})
            for member in list(members):
                member.wake_writer()
            return
        newest = self.cursor
        outlet = first.outlet
        skipped = gap + len(items) - len(taken)
        if skipped:
            dropped = skipped * len(members)
            outlet.streams.record_drop(self.key, outlet.client_type, "conflated", dropped)
        if data is None:
            group.cursor = newest
            return
        size = len(data)
        stragglers = []
        for member, try_write in members.items():
            try:
                written = try_write(data)
            except BlockingIOError:
                written = 0
            except OSError:
                written = -1
            if written != size:
                stragglers.append((member, written))
        batch = [(self.key, taken)]
        for member, written in stragglers:
            # Released as the group was before this pass: nothing went out, its task
            # takes the items again; or a part went out, its task writes the rest.
            reader = self._placed[member][1]
            self.release(member)
            if written > 0:
                reader.cursor = newest
                member.sent_at = now
                member.owe(memoryview(data)[written:], batch)
            member.wake_writer()
        group.cursor = newest
        group.sent_at = now
        delivered = len(members)
        self.writes += delivered
        if delivered:
            outlet.observe(batch, delivered)


F = TypeVar("F", bound=FanOut[Any])


class FanOuts(Generic[F]):
    """The fan-outs of one server, one per followed Topic, each started on a first join."""

    def __init__(self, factory: Callable[[str, Topic[Any]], F]) -> None:
        self._factory = factory
        self.nursery: trio.Nursery | None = None
        """Where fan-out tasks run; without one, every stream is served by its own task."""
        self.by_key: dict[str, F] = {}

    def join(self, member: Member, key: str, topic: Topic[Any]) -> F | None:
        """Let ``key``'s fan-out serve ``member`` and return it; ``None``: no fast path."""
        nursery = self.nursery
        if nursery is None:
            return None
        fan_out = self.by_key.get(key)
        if fan_out is None or fan_out.topic is not topic:
            fan_out = self.by_key[key] = self._factory(key, topic)
            nursery.start_soon(self._run, fan_out)
        fan_out.members.add(member)
        return fan_out

    def leave(self, member: Member, key: str) -> None:
        """Stop serving ``member``."""
        fan_out = self.by_key.get(key)
        if fan_out is not None:
            fan_out.leave(member)

    async def _run(self, fan_out: F) -> None:
        try:
            await fan_out.run()
        finally:
            if self.by_key.get(fan_out.key) is fan_out:
                del self.by_key[fan_out.key]
