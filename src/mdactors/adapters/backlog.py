"""A bounded queue of items waiting to be written to an outside store.

Writers push from the event loop (never blocking); the store's writer task
takes batches, and gives a batch back when its write failed, so a store that
is down loses nothing until the bound is reached. Beyond the bound the
oldest items are dropped and counted (:attr:`Backlog.dropped`), never lost
silently.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

__all__ = ["Backlog"]


class Backlog:
    """Items waiting for a store, oldest first, at most ``bound``; overflow drops the oldest.

    ``in_flight`` counts items taken for a write that has not finished: they
    are still waiting (a failed write gives them back), so :attr:`waiting`
    includes them.
    """

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.items: deque[Any] = deque()
        self.dropped = 0
        self.in_flight = 0

    def __len__(self) -> int:
        return len(self.items)

    def _trim(self) -> None:
        over = len(self.items) - self.bound
        if over > 0:
            self.dropped += over
            for _ in range(over):
                self.items.popleft()

    def push(self, items: Iterable[Any]) -> None:
        self.items.extend(items)
        self._trim()

    @property
    def waiting(self) -> int:
        """Items not written yet: queued plus in flight."""
        return len(self.items) + self.in_flight

    def take(self, count: int) -> list[Any]:
        items = self.items
        batch = [items.popleft() for _ in range(min(count, len(items)))]
        self.in_flight += len(batch)
        return batch

    def written(self, batch: list[Any]) -> None:
        """A batch from :meth:`take` is stored."""
        self.in_flight -= len(batch)

    def give_back(self, batch: list[Any]) -> None:
        """Return a batch that could not be written, ahead of newer items."""
        self.in_flight -= len(batch)
        self.items.extendleft(reversed(batch))
        self._trim()
