"""The fan-out primitive: one writer, any number of readers, nobody waits on anybody.

A :class:`Topic` is a fixed-size ring of the most recent items plus a parking
lot of readers waiting for the next publish. Each :class:`Reader` keeps its
own cursor. Publishing is O(1) whatever the number of readers and never
blocks; a reader that falls more than the ring behind skips to the oldest
item still held and is told how many it missed (the gap), so a slow consumer
can only hurt itself.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import trio

__all__ = ["Reader", "Topic", "TopicClosed"]

T = TypeVar("T")


class TopicClosed(Exception):
    """The topic was closed: no item will ever be published again."""


class Topic(Generic[T]):
    """A ring of the last ``capacity`` items with wake-up of waiting readers."""

    __slots__ = ("_closed", "_listeners", "_lot", "_mask", "_next", "_ring", "capacity", "name")

    def __init__(self, name: str, capacity: int = 256) -> None:
        if capacity <= 0 or capacity & (capacity - 1):
            raise ValueError(f"capacity must be a power of two, got {capacity}")
        self.name = name
        self.capacity = capacity
        self._mask = capacity - 1
        self._ring: list[T | None] = [None] * capacity
        self._next = 0
        self._lot = trio.lowlevel.ParkingLot()
        self._listeners: set[trio.lowlevel.ParkingLot] = set()
        self._closed = False

    @property
    def published(self) -> int:
        """How many items were ever published (the next item's position)."""
        return self._next

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def latest(self) -> T | None:
        """The most recent item, or ``None`` before the first publish."""
        if self._next == 0:
            return None
        return self._ring[(self._next - 1) & self._mask]

    @property
    def wakeups(self) -> trio.lowlevel.ParkingLot:
        """The lot unparked on every publish and on close (park in it to wait for news)."""
        return self._lot

    def publish(self, item: T) -> None:
        """Append ``item`` and wake every waiting reader. Never blocks."""
        if self._closed:
            raise TopicClosed(self.name)
        self._ring[self._next & self._mask] = item
        self._next += 1
        self._lot.unpark_all()
        for lot in self._listeners:
            lot.unpark_all()

    def close(self) -> None:
        """End the topic: readers drain what is left, then get :class:`TopicClosed`."""
        self._closed = True
        self._lot.unpark_all()
        for lot in self._listeners:
            lot.unpark_all()

    def attach(self, lot: trio.lowlevel.ParkingLot) -> None:
        """Also wake ``lot`` on every publish (for readers of several topics)."""
        self._listeners.add(lot)

    def detach(self, lot: trio.lowlevel.ParkingLot) -> None:
        """Stop waking ``lot``."""
        self._listeners.discard(lot)

    def reader(self, *, from_latest: bool = True) -> Reader[T]:
        """A new reader; it first sees the latest item if ``from_latest``."""
        start = self._next - 1 if from_latest and self._next else self._next
        return Reader(self, start)


class Reader(Generic[T]):
    """One consumer's cursor into a :class:`Topic`."""

    __slots__ = ("_topic", "cursor", "missed")

    def __init__(self, topic: Topic[T], cursor: int) -> None:
        self._topic = topic
        self.cursor = cursor
        self.missed = 0

    @property
    def lag(self) -> int:
        """Items published but not yet read."""
        return self._topic._next - self.cursor

    def take(self, limit: int) -> tuple[list[T], int]:
        """Return up to ``limit`` pending items (oldest first) and the gap skipped.

        Never waits. When more than the ring is pending, the oldest ones are
        gone: the cursor jumps to the oldest item still held and the number
        lost is returned (and added to :attr:`missed`). When more than
        ``limit`` are pending the *newest* ``limit`` are returned and the
        rest is counted as a gap too: a consumer that asks for few items
        wants fresh ones (conflation).
        """
        topic = self._topic
        newest = topic._next
        pending = newest - self.cursor
        if pending <= 0:
            return [], 0
        gap = 0
        keep = min(limit, topic.capacity)
        if pending > keep:
            gap = pending - keep
            self.cursor = newest - keep
        ring, mask = topic._ring, topic._mask
        items = [ring[position & mask] for position in range(self.cursor, newest)]
        self.cursor = newest
        self.missed += gap
        return items, gap  # type: ignore[return-value]

    async def wait(self) -> None:
        """Wait until at least one item is pending; raise :class:`TopicClosed` at the end."""
        topic = self._topic
        if self.cursor < topic._next:
            await trio.lowlevel.checkpoint()
            return
        if topic._closed:
            raise TopicClosed(topic.name)
        await topic._lot.park()
        if self.cursor >= topic._next and topic._closed:
            raise TopicClosed(topic.name)

    async def next_batch(self, limit: int = 64) -> tuple[list[T], int]:
        """Wait for items, then :meth:`take` them."""
        await self.wait()
        return self.take(limit)
