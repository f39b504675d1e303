"""The perpetuals' once-a-second Binance futures events: mark prices and liquidations.

Binance USD-M pushes ``@markPrice`` every 3 s (``@1s``: every second) and, on
``@forceOrder``, *the latest* liquidation of a symbol within each 1000 ms
(none when there was none). :class:`FuturesFeed` does both for every
perpetual on one absolute one-second cadence of the market's wall clock: a
:class:`MarkSnapshot` of every perpetual's funding state, then a
:class:`ForcedOrderUpdate` for each perpetual whose
:class:`~mdactors.domain.positioning.OpenInterest` emitted forced orders
since the last second (the newest of them). Sessions read its Topic like any
other; each event is encoded once per stream for all of them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import trio

from mdactors.domain.positioning import ForcedOrder
from mdactors.engine.binance_feed import FeedEvent
from mdactors.engine.derived_actor import PerpetualActor
from mdactors.engine.topic import Topic

__all__ = ["ForcedOrderUpdate", "FuturesFeed", "FuturesItem", "MarkSnapshot", "MarkState"]


@dataclass(frozen=True, slots=True)
class MarkState:
    """A perpetual's mark, index, estimated funding and next funding time at ``time_ms``."""

    mark: float
    index: float
    rate: float
    interest_rate: float
    next_funding_ms: int
    time_ms: int

    @classmethod
    def of(cls, actor: PerpetualActor) -> MarkState:
        """The values of ``actor``'s funding state now (a copy: it moves on every tick).
        Before the first tick has been observed, the mark is the last price and the
        index the spot's mid."""
        funding = actor.funding
        mark, index = funding.mark, funding.index
        return cls(
            actor.latest.price if math.isnan(mark) else mark,
            actor.spot.mid if math.isnan(index) else index,
            funding.estimated_rate,
            funding.rules.interest_rate,
            funding.next_funding_ms,
            funding.time_ns // 1_000_000,
        )


@dataclass(slots=True, eq=False)
class MarkSnapshot(FeedEvent):
    """Every perpetual's :class:`MarkState` at wall-clock second ``second``."""

    marks: dict[str, MarkState]
    second: int
    event_ms: int
    wire: dict[str, bytes] = field(default_factory=dict, repr=False)


@dataclass(slots=True, eq=False)
class ForcedOrderUpdate(FeedEvent):
    """The newest liquidation of perpetual ``key`` within the last second."""

    key: str
    order: ForcedOrder
    event_ms: int
    wire: dict[str, bytes] = field(default_factory=dict, repr=False)


FuturesItem = MarkSnapshot | ForcedOrderUpdate


class FuturesFeed:
    """Publishes the perpetuals' :class:`MarkSnapshot` and :class:`ForcedOrderUpdate`\\ s
    each second (``wall_clock`` in ns)."""

    def __init__(
        self,
        actors: Mapping[str, PerpetualActor],
        wall_clock: Callable[[], int] = time.time_ns,
        capacity: int = 256,
    ) -> None:
        self.actors = dict(actors)
        self.topic: Topic[FuturesItem] = Topic("binance:futures", capacity)
        self._wall_clock = wall_clock
        self._seen = {key: self._newest_id(actor) for key, actor in self.actors.items()}

    @staticmethod
    def _newest_id(actor: PerpetualActor) -> int:
        forced = actor.positions.forced
        return forced[-1].id if forced else 0

    def publish(self) -> None:
        """Publish this second's snapshot and liquidations."""
        now_ns = self._wall_clock()
        event_ms = now_ns // 1_000_000
        marks = {key: MarkState.of(actor) for key, actor in self.actors.items()}
        self.topic.publish(MarkSnapshot(marks, now_ns // 1_000_000_000, event_ms))
        for key, actor in self.actors.items():
            newest = self._newest_id(actor)
            if newest > self._seen[key]:
                self._seen[key] = newest
                self.topic.publish(ForcedOrderUpdate(key, actor.positions.forced[-1], event_ms))

    async def run(self) -> None:
        """Publish on the wall clock's whole seconds until cancelled."""
        while True:
            now_ns = self._wall_clock()
            await trio.sleep((1_000_000_000 - now_ns % 1_000_000_000) / 1e9)
            self.publish()
