"""The stream outlet: what a stream does with each delivery, whatever its transport.

A transport renders a batch to bytes and writes it its own way; the
:class:`Outlet` of the stream owns the rest, the same for every transport
that uses it (Connect and SSE, the streams written by a response generator
on the HTTP port; the WebSocket sessions, which also take the fast path of
:class:`~mdactors.engine.fanout.StreamFanOut`):

- take: the newest tick per symbol (:meth:`Outlet.take_newest`), or the
  newest ``limit`` (:meth:`Outlet.take`), the ticks skipped counted as drops
  with reason ``conflated``;
- the slow-consumer decision, one meaning for every transport: **a write (a
  frame, a message) that does not complete within ``SLOW_CONSUMER_TIMEOUT``
  ends the stream** (:class:`SlowConsumer`; each transport says it its own
  way), the ticks the client will now never get counted as drops with reason
  ``disconnected``. :meth:`Outlet.write` runs the transport's blocking write
  under that timeout (WebSocket: the session closes with 1008 and the
  reason, or resets the connection when the frame is half written); a
  response generator, which cannot be interrupted mid-write, checks after
  each write (:meth:`Outlet.delivered`) and the transport ends a write that
  never completes at that same timeout (on the HTTP port, the write guard
  resets the connection). A write slower than :data:`BEHIND_AFTER_S` marks
  the stream :attr:`~Outlet.behind`: it then takes only the newest tick per
  symbol until a write is quick again;
- publication latency (tick stamp to hand-off to the transport), observed
  once per delivered tick under the stream's ``client_type``
  (:meth:`Outlet.observe`; a fan-out pass that wrote one tick to ``n``
  streams observes it ``n`` times at once).

Opening (the stream limit, refusal while draining) is the
:class:`~mdactors.engine.subscription.StreamRegistry`'s; each protocol says a
refusal through its error table (:mod:`mdactors.engine.errors`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import trio

from mdactors.adapters.latency_histogram import LatencySeries
from mdactors.domain.tick import Tick
from mdactors.engine.subscription import StreamRegistry, Subscription

__all__ = ["BEHIND_AFTER_S", "Batch", "Outlet", "SlowConsumer"]

BEHIND_AFTER_S = 0.05
"""A write slower than this means the client is not keeping up with every tick."""


class SlowConsumer(Exception):
    """A write took longer than ``SLOW_CONSUMER_TIMEOUT``: the stream ends."""

    def __init__(self, took: float) -> None:
        super().__init__(f"client too slow: an update took {took:.1f} s to send")
        self.took = took


Batch = Sequence[tuple[str, Sequence[Any]]]
"""What one write carries: ``(key, items taken)`` per symbol (items with a
``ts_ns`` stamp, such as ticks, count for publication latency)."""


class Outlet:
    """One open stream's deliveries: conflation, the slow decision, drops and latency."""

    def __init__(
        self,
        streams: StreamRegistry,
        latency: LatencySeries,
        client_type: str,
        subscription: Subscription | None,
        slow_after: float,
        *,
        clock: Callable[[], float] = trio.current_time,
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.streams = streams
        self.latency = latency
        self.client_type = client_type
        self.subscription = subscription
        """The stream's cursors (a transport whose stream changes what it follows,
        such as a WebSocket session, swaps it; ``None``: nothing followed yet)."""
        self.slow_after = slow_after
        self.behind = False
        """Whether the last write was slow: take only the newest tick per symbol."""
        self._clock = clock
        self._wall_clock_ns = wall_clock_ns

    def take_newest(self) -> list[tuple[str, Tick]]:
        """``(key, newest tick)`` of every symbol with news; skipped ticks count as drops."""
        return [(key, ticks[-1]) for key, ticks in self.take(1)]

    def take(self, limit: int) -> list[tuple[str, list[Any]]]:
        """``(key, newest ≤ limit items)`` of every symbol with news; the items
        skipped count as drops with reason ``conflated``."""
        subscription = self.subscription
        if subscription is None:
            return []
        taken = []
        for key, items, gap in subscription.take(limit):
            self.streams.record_drop(key, self.client_type, "conflated", gap)
            taken.append((key, items))
        return taken

    async def write(
        self,
        write: Callable[[Any], Awaitable[object]],
        data: bytes | memoryview,
        batch: Batch = (),
    ) -> None:
        """Hand ``data`` (carrying ``batch``) to the transport's blocking ``write``.

        The slow-consumer decision: a write that does not complete within the
        timeout is cancelled, ``batch`` and every item still pending are
        counted as dropped (``disconnected``) and :class:`SlowConsumer` is
        raised (the transport then ends the stream its way; the write may
        have been cut in the middle of its data). Otherwise ``batch`` is
        delivered: its latency is observed.
        """
        with trio.move_on_after(self.slow_after) as writing:
            await write(data)
        if writing.cancelled_caught:
            self.lost("disconnected", batch)
            raise SlowConsumer(self.slow_after)
        self.observe(batch)

    def observe(self, batch: Batch, times: int = 1) -> None:
        """Publication latency of each stamped item of ``batch``, delivered ``times`` times."""
        now_ns = self._wall_clock_ns()
        latency = self.latency
        for _, items in batch:
            for item in items:
                stamp = getattr(item, "ts_ns", None)
                if stamp is not None:
                    latency.observe_n(max(0.0, (now_ns - stamp) / 1e9), times)

    def delivered(self, ticks: Iterable[Tick], started: float) -> None:
        """A write begun at ``started`` (this outlet's clock) handed ``ticks`` over.

        Raises :class:`SlowConsumer` when it took longer than the slow-consumer
        timeout, after counting what the client will not get; otherwise
        observes each tick's publication latency and updates :attr:`behind`.
        """
        took = self._clock() - started
        if took > self.slow_after:
            self.lost("disconnected")
            raise SlowConsumer(took)
        self.behind = took > BEHIND_AFTER_S
        now_ns = self._wall_clock_ns()
        observe = self.latency.observe
        for tick in ticks:
            observe(max(0.0, (now_ns - tick.ts_ns) / 1e9))

    def lost(self, reason: str, batch: Batch = ()) -> None:
        """Count every tick still pending for this stream, and those of ``batch``
        (taken but not delivered), as dropped with ``reason``."""
        record_drop = self.streams.record_drop
        for key, items in batch:
            record_drop(key, self.client_type, reason, len(items))
        if self.subscription is not None:
            for key, reader in self.subscription.readers.items():
                record_drop(key, self.client_type, reason, max(0, reader.lag))
