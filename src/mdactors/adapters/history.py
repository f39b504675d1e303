"""Price history behind one small interface; this module's store keeps it in memory.

Writers call the ``record_*`` methods from the event loop (they must never
block); readers await the query methods, so a store backed by a server can
do its I/O off the loop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

from mdactors.adapters.tick_ring import TickRing
from mdactors.domain.candles import INTERVALS, Candle
from mdactors.domain.tick import Tick

__all__ = ["HistoryStore", "MemoryHistory"]

T = TypeVar("T")


class HistoryStore(Protocol):
    """Where ticks and closed candles go, and where history queries read."""

    def record_ticks(self, ticks: Sequence[Tick]) -> None:
        """Store ticks of one symbol, oldest first."""

    def record_candles(self, candles: Sequence[Candle]) -> None:
        """Store closed candles, oldest first."""

    async def ticks(self, key: str, start_ns: int, end_ns: int, limit: int) -> list[Tick]:
        """The most recent ``limit`` ticks with ``start_ns <= ts_ns <= end_ns``, oldest first."""
        ...

    async def candles(
        self, key: str, interval: str, start_ms: int, end_ms: int, limit: int
    ) -> list[Candle]:
        """The most recent ``limit`` closed candles starting in ``[start_ms, end_ms]``."""
        ...

    def describe(self) -> Mapping[str, object]:
        """Name and state of the store, for readiness (``backend``, ``status`` and details)."""
        ...


def _latest_in_range(items: Iterable[T], stamp: str, start: int, end: int, limit: int) -> list[T]:
    picked: list[T] = []
    for item in items:
        value = getattr(item, stamp)
        if value > end:
            continue
        if value < start or len(picked) >= limit:
            break
        picked.append(item)
    picked.reverse()
    return picked


class MemoryHistory:
    """Bounded rings per symbol: ``tick_capacity`` ticks (columnar, see
    :class:`~mdactors.adapters.tick_ring.TickRing`) and ``candle_capacity``
    candles per interval. The oldest entries fall off; nothing here ever grows
    without bound."""

    def __init__(self, tick_capacity: int, candle_capacity: int = 10_080) -> None:
        self.tick_capacity = tick_capacity
        self.candle_capacity = candle_capacity
        self._ticks: dict[str, TickRing] = {}
        self._candles: dict[tuple[str, str], deque[Candle]] = {}

    def record_ticks(self, ticks: Sequence[Tick]) -> None:
        for tick in ticks:
            ring = self._ticks.get(tick.symbol)
            if ring is None:
                ring = self._ticks[tick.symbol] = TickRing(tick.symbol, self.tick_capacity)
            ring.append(tick)

    def record_candles(self, candles: Sequence[Candle]) -> None:
        for candle in candles:
            slot = (candle.symbol, candle.interval)
            ring = self._candles.get(slot)
            if ring is None:
                ring = self._candles[slot] = deque(maxlen=self.candle_capacity)
            ring.append(candle)

    async def ticks(self, key: str, start_ns: int, end_ns: int, limit: int) -> list[Tick]:
        ring = self._ticks.get(key)
        return ring.latest_in_range(start_ns, end_ns, limit) if ring is not None else []

    async def candles(
        self, key: str, interval: str, start_ms: int, end_ms: int, limit: int
    ) -> list[Candle]:
        if interval not in INTERVALS:
            raise ValueError(f"unknown interval {interval!r}")
        ring = self._candles.get((key, interval), ())
        return _latest_in_range(reversed(ring), "start_ms", start_ms, end_ms, limit)

    def describe(self) -> dict[str, str]:
        return {"backend": "memory", "status": "ok"}
