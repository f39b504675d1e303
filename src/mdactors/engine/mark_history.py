"""One-minute candles of each perpetual's mark price, recorded live, bounded in memory.

The mark price (:class:`~mdactors.domain.funding.FundingState`) is not a
trade price, so the recorder's candles do not hold it. :class:`MarkHistory`
follows every perpetual's Topic like any reader (it can never slow an actor)
and folds the mark as of each batch of ticks into a 1-minute
:class:`~mdactors.domain.candles.CandleSeries`, closed on the minute by a
timer. It keeps the last :data:`MARK_HISTORY_MINUTES` closed minutes;
coarser intervals are aggregated from them on request.

What it holds starts at start-up: :attr:`MarkHistory.first_full_ms` says
from when, so a reader can say what it serves before that (the Binance
futures view serves the perpetual's own candles there, documented).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping

import trio

from mdactors.domain.candles import Candle, CandleSeries
from mdactors.engine.derived_actor import PerpetualActor

__all__ = ["MARK_HISTORY_MINUTES", "MarkHistory"]

MARK_HISTORY_MINUTES = 7 * 1_440
"""Closed one-minute mark candles kept per perpetual (a week, ~1.5 MB)."""
_MINUTE_MS = 60_000


class MarkHistory:
    """The mark-price candles of ``actors`` (the market's perpetuals, by key);
    ``wall_clock`` (ns) is the market's, which stamps the ticks."""

    def __init__(
        self,
        actors: Mapping[str, PerpetualActor],
        minutes: int = MARK_HISTORY_MINUTES,
        wall_clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.actors = dict(actors)
        self._wall_clock = wall_clock
        self._series = {key: CandleSeries(key, "1m") for key in self.actors}
        self._closed: dict[str, deque[Candle]] = {key: deque(maxlen=minutes) for key in self.actors}
        self._started_ms: dict[str, int] = {}

    def observe(self, key: str, ts_ms: int, mark: float) -> None:
        """Fold the mark ``mark`` at ``ts_ms`` into ``key``'s current minute."""
        self._started_ms.setdefault(key, ts_ms)
        self._closed[key].extend(self._series[key].update(ts_ms, mark, mark, mark, mark, 0.0))

    def close_until(self, now_ms: int) -> None:
        """Close every minute that ended by ``now_ms`` (a minute without ticks is flat)."""
        for key, series in self._series.items():
            if series.current is not None:
                self._closed[key].extend(series.close_until(now_ms))

    def first_full_ms(self, key: str) -> int | None:
        """The start of the oldest whole minute held for ``key`` (``None`` before one)."""
        closed = self._closed.get(key)
        if not closed:
            return None
        oldest = closed[0].start_ms
        started = self._started_ms.get(key, oldest)
        # The minute recording began in is partial unless it began on the minute.
        return oldest + _MINUTE_MS if oldest < started < oldest + _MINUTE_MS else oldest

    def candles(self, key: str, start_ms: int, end_ms: int) -> list[Candle]:
        """The 1-minute mark candles starting within ``[start_ms, end_ms]``, oldest first,
        the forming one last (``closed`` false); only whole minutes."""
        first = self.first_full_ms(key)
        if first is None:
            return []
        low = max(start_ms, first)
        held = [c for c in self._closed[key] if low <= c.start_ms <= end_ms]
        current = self._series[key].current
        if current is not None and low <= current.start_ms <= end_ms:
            held.append(current)
        return held

    async def _follow(self, key: str, actor: PerpetualActor) -> None:
        reader = actor.topic.reader(from_latest=True)
        while True:
            ticks, _ = await reader.next_batch(actor.topic.capacity)
            mark = actor.funding.mark
            if ticks and not math.isnan(mark):
                self.observe(key, ticks[-1].ts_ms, mark)

    async def _close_on_time(self) -> None:
        while True:
            now_ms = self._wall_clock() // 1_000_000
            await trio.sleep((_MINUTE_MS - now_ms % _MINUTE_MS) / 1000)
            self.close_until(self._wall_clock() // 1_000_000)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow every perpetual and close minutes on time, until cancelled."""
        async with trio.open_nursery() as nursery:
            for key, actor in self.actors.items():
                nursery.start_soon(self._follow, key, actor)
            nursery.start_soon(self._close_on_time)
            task_status.started()
