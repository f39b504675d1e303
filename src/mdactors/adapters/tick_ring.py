"""A bounded, columnar ring of one symbol's ticks.

A day of 1-second ticks for six symbols kept as ``Tick`` objects costs about
450 bytes each (the object, its boxed floats, its encoding cache): ~230 MB.
Kept here as twelve numpy columns it costs 96 bytes a tick, and ``Tick``
objects are rebuilt only for the rows a query returns.
"""

from __future__ import annotations

import numpy as np

from mdactors.domain.tick import Tick

__all__ = ["TickRing"]

_FLOATS = ("price", "bid", "ask", "volume", "change", "change_pct", "day_high", "day_low",
           "day_volume")  # fmt: skip


class TickRing:
    """The newest ``capacity`` ticks of one symbol, oldest overwritten first."""

    __slots__ = ("_floats", "_head", "_seq", "_trades", "_ts", "capacity", "count", "symbol")

    def __init__(self, symbol: str, capacity: int) -> None:
        self.symbol = symbol
        self.capacity = capacity
        self.count = 0
        self._head = 0  # next slot to write
        self._ts = np.zeros(capacity, dtype=np.int64)
        self._seq = np.zeros(capacity, dtype=np.int64)
        self._trades = np.zeros(capacity, dtype=np.int64)
        self._floats = np.zeros((capacity, len(_FLOATS)), dtype=np.float64)

    def append(self, tick: Tick) -> None:
        """Store ``tick`` (ticks must arrive in time order)."""
        slot = self._head
        self._ts[slot] = tick.ts_ns
        self._seq[slot] = tick.seq
        self._trades[slot] = tick.trades
        self._floats[slot] = (
            tick.price, tick.bid, tick.ask, tick.volume, tick.change, tick.change_pct,
            tick.day_high, tick.day_low, tick.day_volume,
        )  # fmt: skip
        self._head = (slot + 1) % self.capacity
        if self.count < self.capacity:
            self.count += 1

    def _order(self) -> np.ndarray:
        """Ring slots in time order, oldest first."""
        start = (self._head - self.count) % self.capacity
        return (start + np.arange(self.count)) % self.capacity

    def latest_in_range(self, start_ns: int, end_ns: int, limit: int) -> list[Tick]:
        """The newest ``limit`` ticks with ``start_ns <= ts_ns <= end_ns``, oldest first."""
        if self.count == 0 or limit <= 0:
            return []
        order = self._order()
        stamps = self._ts[order]
        low = int(np.searchsorted(stamps, start_ns, side="left"))
        high = int(np.searchsorted(stamps, end_ns, side="right"))
        rows = order[max(low, high - limit) : high]
        floats = self._floats[rows].tolist()
        seqs, stamps, trades = (
            self._seq[rows].tolist(), self._ts[rows].tolist(), self._trades[rows].tolist()
        )  # fmt: skip
        return [
            Tick(self.symbol, seq, *values[:3], values[3], ts, *values[4:], trades=count)
            for seq, ts, values, count in zip(seqs, stamps, floats, trades, strict=True)
        ]
