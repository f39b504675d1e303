"""Smaller HTTP/2 settings state for h2 3.2: a short list per setting instead of a deque.

h2 keeps each setting's values (the current one, then any awaiting the peer's
ACK) in a ``collections.deque``. A deque allocates a 64-slot block up front
(~600 bytes) and every connection has two ``Settings`` of 5–8 entries: about
10 KB per HTTP/2 connection, a quarter of what an idle gRPC subscriber costs
(measured with tracemalloc, 300 connections). The queue never holds more than
a couple of values, so a list with ``popleft`` does the same job in ~70 bytes.

h2 is pinned (3.2.0, forced by purerpc) and its ``Settings`` only ever calls
``deque([value])``, ``append``, ``popleft``, ``len`` and ``[0]`` on these
queues; :func:`compact_h2_settings` swaps the ``collections`` module h2's
settings code sees for one whose ``deque`` is :class:`ValueQueue`.
"""

from __future__ import annotations

import types

import h2.settings

__all__ = ["ValueQueue", "compact_h2_settings"]


class ValueQueue(list):
    """The values of one HTTP/2 setting, oldest first (what h2 needs of a deque)."""

    __slots__ = ()

    def popleft(self) -> object:
        """Remove and return the oldest value."""
        return self.pop(0)


def compact_h2_settings() -> None:
    """Make every h2 ``Settings`` created from now on use :class:`ValueQueue` (idempotent)."""
    h2.settings.collections = types.SimpleNamespace(deque=ValueQueue)  # type: ignore[attr-defined]
