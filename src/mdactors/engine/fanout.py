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
(:mod:`mdactors.api.ws.broadcast`, :mod:`mdactors.api.grpc.fanout`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import trio

from mdactors.engine.topic import Topic

__all__ = ["FanOut", "FanOuts", "Member"]


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
            fan_out.members.discard(member)

    async def _run(self, fan_out: F) -> None:
        try:
            await fan_out.run()
        finally:
            if self.by_key.get(fan_out.key) is fan_out:
                del self.by_key[fan_out.key]
