"""Guards at a symbol's publication edge: the price circuit breaker and feed disruptions.

Both decide, tick by tick, what actually reaches subscribers; neither knows
about trio. The breaker reads tick timestamps (wall clock, ns), the feed
edge takes the caller's monotonic time in seconds.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from collections import deque

from mdactors.domain.overlay import Scenario
from mdactors.domain.scenarios import Disruption, FeedMode
from mdactors.domain.tick import Tick

__all__ = ["STALE_AFTER_S", "FeedEdge", "PriceBreaker"]

STALE_AFTER_S = 30.0
"""A symbol with no published tick for this long is reported stale."""

_BUCKETS = 12


class PriceBreaker:
    """Halts a symbol whose price moves more than ``threshold`` within ``window`` seconds.

    The move is measured against the lowest and highest price of the window
    (kept in ``12`` buckets, so the window is between 11/12 and the whole of
    ``window``; the check costs a few comparisons per tick). Once tripped it
    stays open until :meth:`reset` or for ``timeout`` seconds; publishing
    resumes from the then current price with a fresh window.
    """

    __slots__ = (
        "_bucket_ns",
        "_buckets",
        "_high",
        "_low",
        "opened_ns",
        "reason",
        "threshold",
        "timeout_ns",
        "trips",
    )

    def __init__(self, threshold: float, window: float, timeout: float) -> None:
        if threshold <= 0.0 or window <= 0.0 or timeout <= 0.0:
            raise ValueError("threshold, window and timeout must be > 0")
        self.threshold = threshold
        self._bucket_ns = max(1, int(window * 1e9 / _BUCKETS))
        self.timeout_ns = int(timeout * 1e9)
        self._buckets: deque[list[float]] = deque()
        self._low = float("inf")
        self._high = 0.0
        self.opened_ns: int | None = None
        self.reason = ""
        self.trips = 0

    @property
    def open(self) -> bool:
        """Whether publishing is halted."""
        return self.opened_ns is not None

    def allows(self, price: float, ts_ns: int) -> bool:
        """Record ``price`` at ``ts_ns``; whether the tick may be published."""
        if self.opened_ns is not None:
            if ts_ns - self.opened_ns < self.timeout_ns:
                return False
            self.reset()
        bucket = ts_ns // self._bucket_ns
        buckets = self._buckets
        if buckets and buckets[-1][0] == bucket:
            current = buckets[-1]
            if price < current[1]:
                current[1] = price
                self._low = min(self._low, price)
            if price > current[2]:
                current[2] = price
                self._high = max(self._high, price)
        else:
            buckets.append([bucket, price, price])
            while buckets[0][0] <= bucket - _BUCKETS:
                buckets.popleft()
            self._low = min(b[1] for b in buckets)
            self._high = max(b[2] for b in buckets)
        if price > self._low * (1.0 + self.threshold):
            self._trip(ts_ns, f"rose {price / self._low - 1.0:.1%} within the window")
        elif price < self._high * (1.0 - self.threshold):
            self._trip(ts_ns, f"fell {1.0 - price / self._high:.1%} within the window")
        return self.opened_ns is None

    def _trip(self, ts_ns: int, reason: str) -> None:
        self.opened_ns = ts_ns
        self.reason = reason
        self.trips += 1

    def reset(self) -> None:
        """Close the breaker and forget the window (the next tick starts a new one)."""
        self.opened_ns = None
        self.reason = ""
        self._buckets.clear()
        self._low = float("inf")
        self._high = 0.0


class FeedEdge:
    """The feed disruptions of one symbol, applied to each tick about to be published.

    Several disruptions combine: the largest latency and jitter, losses
    compounded, an outage over a stale feed over a degraded one. Delayed
    ticks keep their exchange timestamp and their order. A stale feed
    republishes the last tick sent (same sequence and timestamp, no volume)
    or sends nothing.
    """

    def __init__(self, rng: random.Random) -> None:
        self.scenarios: list[Scenario] = []
        self._rng = rng
        self._pending: list[tuple[float, int, Tick]] = []
        self._last_due = 0.0
        self.last_sent: Tick | None = None
        self.lost = 0
        self.mode: FeedMode | None = None
        """The disruption mode at the last tick routed (``None``: no disruption)."""

    @property
    def idle(self) -> bool:
        """No disruption left and nothing waiting: the caller may drop this edge."""
        return not self.scenarios and not self._pending

    def current(self, t: float) -> Disruption | None:
        """The combined disruption at ``t`` (finished scenarios are dropped)."""
        combined: Disruption | None = None
        for scenario in list(self.scenarios):
            timeline = scenario.timeline
            if t >= timeline.end:
                self.scenarios.remove(scenario)
                continue
            phase, _ = timeline.phase(t)
            part = scenario.shape.at(timeline.level(t), phase)  # type: ignore[union-attr]
            if combined is None:
                combined = part
                continue
            mode = max(combined.mode, part.mode, key=_MODE_RANK.__getitem__)
            combined = Disruption(
                max(combined.latency, part.latency),
                max(combined.jitter, part.jitter),
                1.0 - (1.0 - combined.loss) * (1.0 - part.loss),
                mode,
                combined.republish and part.republish,
            )
        return combined

    def route(self, tick: Tick, t: float) -> list[Tick]:
        """What to publish now for a fresh ``tick`` at ``t``; late ticks wait in the edge."""
        disruption = self.current(t)
        self.mode = disruption.mode if disruption is not None else None
        if disruption is None:
            return self._sent(tick)
        if disruption.mode is FeedMode.OUTAGE:
            return []
        if disruption.mode is FeedMode.STALE:
            if disruption.republish and self.last_sent is not None:
                return [dataclasses.replace(self.last_sent, volume=0.0, wire={})]
            return []
        if disruption.loss and self._rng.random() < disruption.loss:
            self.lost += 1
            return []
        delay = disruption.latency
        if disruption.jitter:
            delay = max(0.0, delay + self._rng.uniform(-disruption.jitter, disruption.jitter))
        if delay <= 0.0 and not self._pending:
            return self._sent(tick)
        due = self._last_due = max(t + delay, self._last_due)
        heapq.heappush(self._pending, (due, tick.seq, tick))
        return []

    def next_due(self) -> float | None:
        """When the earliest delayed tick is due, if any."""
        return self._pending[0][0] if self._pending else None

    def release(self, t: float) -> list[Tick]:
        """Delayed ticks due by ``t``, in order."""
        out: list[Tick] = []
        while self._pending and self._pending[0][0] <= t:
            out.extend(self._sent(heapq.heappop(self._pending)[2]))
        return out

    def _sent(self, tick: Tick) -> list[Tick]:
        self.last_sent = tick
        return [tick]


_MODE_RANK = {FeedMode.DEGRADED: 0, FeedMode.STALE: 1, FeedMode.OUTAGE: 2}
