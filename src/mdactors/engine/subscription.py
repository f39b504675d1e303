"""Client subscriptions: readers over several topics, and the process-wide stream table.

A :class:`Subscription` is what every streaming transport (SSE, gRPC, WS)
reads from: one cursor per symbol, one parking lot woken by any of its topics
or by the end of the stream. :class:`StreamRegistry` counts open streams per
transport and symbol, enforces the process limit and tallies conflation
drops; metrics read it at scrape time, so none of this costs anything per tick.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import trio

from mdactors.domain.tick import Tick
from mdactors.engine.topic import Reader, Topic

__all__ = ["StreamClosed", "StreamRegistry", "Subscription", "TooManyStreams"]


class StreamClosed(Exception):
    """The stream was ended by the server (drain or topic closed)."""


class TooManyStreams(Exception):
    """The process-wide stream limit is reached."""


class Subscription:
    """Cursors over the topics of the symbols one client follows.

    Use as a context manager: entering attaches the subscription's parking
    lot to its topics, leaving detaches it (no leaked wake-ups). ``stop``
    wakes the waiter and ends the stream.

    A subscription to a single topic (the common case) parks in the topic's
    own lot instead: a publish then wakes all such readers with one
    ``unpark_all`` rather than one per subscription. ``stop`` wakes every
    reader of that topic; the others find nothing pending and park again.
    """

    def __init__(self, topics: Mapping[str, Topic[Tick]], *, from_latest: bool = True) -> None:
        self.topics = dict(topics)
        self.readers: dict[str, Reader[Tick]] = {
            key: topic.reader(from_latest=from_latest) for key, topic in self.topics.items()
        }
        self._shared = len(self.topics) == 1
        # The key of a single-topic subscription (its reader may be swapped: look it up).
        self._single = next(iter(self.topics)) if self._shared else None
        self._lot = (
            next(iter(self.topics.values())).wakeups if self._shared else trio.lowlevel.ParkingLot()
        )
        self._stopped = False

    def __enter__(self) -> Subscription:
        if not self._shared:
            for topic in self.topics.values():
                topic.attach(self._lot)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._shared:
            for topic in self.topics.values():
                topic.detach(self._lot)

    def stop(self) -> None:
        """End the stream: the waiter raises :class:`StreamClosed`."""
        self._stopped = True
        self._lot.unpark_all()

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stopped

    def pending(self) -> bool:
        """Whether any reader has items to take."""
        if self._single is not None:
            return self.readers[self._single].lag > 0
        return any(reader.lag > 0 for reader in self.readers.values())

    async def wait(self) -> None:
        """Wait until a tick is pending; :class:`StreamClosed` when stopped or all topics closed.

        Exactly one schedule point per call: a checkpoint when a tick is
        already pending, else the park itself (no second checkpoint after
        the wake-up: one task switch per delivery, not two).
        """
        if self._stopped:
            raise StreamClosed("stream stopped")
        if self.pending():
            await trio.lowlevel.checkpoint()
            return
        while True:
            if all(topic.closed for topic in self.topics.values()):
                raise StreamClosed("market closed")
            await self._lot.park()
            if self._stopped:
                raise StreamClosed("stream stopped")
            if self.pending():
                return

    def take(self, limit: int) -> list[tuple[str, list[Tick], int]]:
        """Per symbol with news: ``(key, newest ≤ limit ticks, ticks skipped)``."""
        key = self._single
        if key is not None:
            reader = self.readers[key]
            if reader.lag <= 0:
                return []
            items, gap = reader.take(limit)
            return [(key, items, gap)]
        batches = []
        for key, reader in self.readers.items():
            if reader.lag > 0:
                items, gap = reader.take(limit)
                batches.append((key, items, gap))
        return batches


class StreamRegistry:
    """Open streams per transport and symbol, with a process-wide limit.

    ``max_streams`` bounds concurrent streams across all transports; open
    subscriptions are tracked so a drain can stop them all.
    """

    def __init__(self, max_streams: int) -> None:
        self.max_streams = max_streams
        self.active = 0
        self.subscribers: Counter[tuple[str, str]] = Counter()
        self.by_type: Counter[str] = Counter()
        """Open streams per transport."""
        self.dropped: Counter[tuple[str, str, str]] = Counter()
        self._subscriptions: set[Subscription] = set()
        self._draining = False

    @contextmanager
    def open(self, client_type: str, subscription: Subscription) -> Iterator[Subscription]:
        """Register ``subscription`` for the duration of a stream.

        Raises :class:`TooManyStreams` at the limit and :class:`StreamClosed`
        while draining.
        """
        if self._draining:
            raise StreamClosed("server is draining")
        if self.active >= self.max_streams:
            raise TooManyStreams(f"stream limit reached ({self.max_streams} concurrent streams)")
        self.active += 1
        self.by_type[client_type] += 1
        for key in subscription.topics:
            self.subscribers[(key, client_type)] += 1
        self._subscriptions.add(subscription)
        try:
            with subscription:
                yield subscription
        finally:
            self._subscriptions.discard(subscription)
            self.active -= 1
            self.by_type[client_type] -= 1
            for key in subscription.topics:
                self.subscribers[(key, client_type)] -= 1

    def record_drop(self, key: str, client_type: str, reason: str, count: int) -> None:
        """Count ``count`` ticks a client of ``client_type`` did not receive."""
        if count:
            self.dropped[(key, client_type, reason)] += count

    def stop_all(self) -> None:
        """Refuse new streams and end every open one (drain)."""
        self._draining = True
        for subscription in list(self._subscriptions):
            subscription.stop()
