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

A transport that writes from its own task with a blocking write hands that
write to :meth:`Outlet.write`, which bounds it by the same timeout: a write
that has not completed within ``SLOW_CONSUMER_TIMEOUT`` is cancelled and ends
the stream (:class:`SlowConsumer`), its ticks and every tick still pending
counted ``disconnected`` (gRPC and WebSocket write this way). A fast path
whose non-blocking ``try_write`` took the bytes reports them with
:meth:`Outlet.observe` (latency only: nothing waited). :func:`write_within`
is the bound alone, for a transport's streams that carry no ticks.

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

__all__ = ["BEHIND_AFTER_S", "Batch", "Outlet", "SlowConsumer", "write_within"]

BEHIND_AFTER_S = 0.05
"""A write slower than this means the client is not keeping up with every tick."""


class SlowConsumer(Exception):
    """A write took longer than ``SLOW_CONSUMER_TIMEOUT``: the stream ends.

    ``completed`` is false when the write was cancelled at the timeout
    (:func:`write_within`) rather than finished late.
    """

    def __init__(self, took: float, *, completed: bool = True) -> None:
        if completed:
            said = f"an update took {took:.1f} s to send"
        else:
            said = f"no update was taken within {took:.1f} s"
        super().__init__(f"client too slow: {said}")
        self.took = took
        self.completed = completed


async def write_within(write: Callable[[], Awaitable[object]], slow_after: float) -> None:
    """Run a transport's blocking ``write``, cancelled if not complete within ``slow_after``.

    Raises :class:`SlowConsumer` (``completed=False``) when it was cancelled.
    """
    with trio.move_on_after(slow_after):
        await write()
        return
    raise SlowConsumer(slow_after, completed=False)


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
        self.observe((("", tuple(ticks)),))

    async def write(self, write: Callable[[], Awaitable[object]], batch: Batch) -> None:
        """Hand ``batch`` over by the transport's blocking ``write`` of its bytes.

        The slow-consumer decision: the write is bounded by the timeout
        (:func:`write_within`); not complete by then, it is cancelled (it may
        have been cut in the middle of its bytes), ``batch`` and every item
        still pending are counted ``disconnected`` and :class:`SlowConsumer`
        is raised, for the transport to end the stream its way. Complete, the
        batch is delivered: latency observed, :attr:`behind` updated.
        """
        started = self._clock()
        try:
            await write_within(write, self.slow_after)
        except SlowConsumer:
            self.lost("disconnected", batch)
            raise
        self.behind = self._clock() - started > BEHIND_AFTER_S
        self.observe(batch)

    def lost(self, reason: str, batch: Batch = ()) -> None:
        """Count every tick still pending for this stream, and those of ``batch``
        (taken but not delivered), as dropped with ``reason``."""
        record_drop = self.streams.record_drop
        for key, items in batch:
            record_drop(key, self.client_type, reason, len(items))
        if self.subscription is not None:
            for key, reader in self.subscription.readers.items():
                record_drop(key, self.client_type, reason, max(0, reader.lag))
