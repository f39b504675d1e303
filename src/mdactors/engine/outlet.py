"""The stream outlet: what a stream does with each delivery, whatever its transport.

A transport renders a batch to bytes and writes it its own way; the
:class:`Outlet` of the stream owns the rest, the same for every transport
that uses it (today Connect and SSE, the streams written by a response
generator on the HTTP port):

- take: the newest tick per symbol (:meth:`Outlet.take_newest`), the ticks
  skipped counted as drops with reason ``conflated``;
- the slow-consumer decision, after each write (:meth:`Outlet.delivered`): a
  write that took longer than ``SLOW_CONSUMER_TIMEOUT`` ends the stream
  (:class:`SlowConsumer`; each transport says it its own way), the ticks the
  client will now never get counted as drops with reason ``disconnected``. A
  write that never completes is ended at that same timeout by the transport
  (on the HTTP port, the write guard resets the connection). A write slower
  than :data:`BEHIND_AFTER_S` marks the stream :attr:`~Outlet.behind`: it
  then takes only the newest tick per symbol until a write is quick again;
- publication latency (tick stamp to hand-off to the transport), observed
  once per delivered tick under the stream's ``client_type``.

A transport that writes from its own task with a blocking write hands that
write to :meth:`Outlet.write`, which bounds it by the same timeout: a write
that has not completed within ``SLOW_CONSUMER_TIMEOUT`` is cancelled and ends
the stream (:class:`SlowConsumer`), its ticks and every tick still pending
counted ``disconnected`` (gRPC writes this way). A fast path whose
non-blocking ``try_write`` took the bytes reports them with
:meth:`Outlet.sent` (latency only: it did not wait). :func:`write_within` is
the bound alone, for a transport's streams that carry no ticks.

Opening (the stream limit, refusal while draining) is the
:class:`~mdactors.engine.subscription.StreamRegistry`'s; each protocol says a
refusal through its error table (:mod:`mdactors.engine.errors`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence

import trio

from mdactors.adapters.latency_histogram import LatencySeries
from mdactors.domain.tick import Tick
from mdactors.engine.subscription import StreamRegistry, Subscription

__all__ = ["BEHIND_AFTER_S", "Outlet", "SlowConsumer", "write_within"]

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


class Outlet:
    """One open stream's deliveries: conflation, the slow decision, drops and latency."""

    def __init__(
        self,
        streams: StreamRegistry,
        latency: LatencySeries,
        client_type: str,
        subscription: Subscription,
        slow_after: float,
        *,
        clock: Callable[[], float] = trio.current_time,
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.streams = streams
        self.latency = latency
        self.client_type = client_type
        self.subscription = subscription
        self.slow_after = slow_after
        self.behind = False
        """Whether the last write was slow: take only the newest tick per symbol."""
        self._clock = clock
        self._wall_clock_ns = wall_clock_ns

    def take_newest(self) -> list[tuple[str, Tick]]:
        """``(key, newest tick)`` of every symbol with news; skipped ticks count as drops."""
        newest = []
        for key, ticks, gap in self.subscription.take(1):
            self.streams.record_drop(key, self.client_type, "conflated", gap)
            newest.append((key, ticks[-1]))
        return newest

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
        self.sent(ticks)

    async def write(self, write: Callable[[], Awaitable[object]], ticks: Sequence[Tick]) -> None:
        """Hand ``ticks`` over by the transport's blocking ``write`` of their bytes.

        The write is bounded by the slow-consumer timeout (:func:`write_within`):
        not complete by then, it is cancelled, ``ticks`` and every tick still
        pending are counted ``disconnected`` and :class:`SlowConsumer` is
        raised; complete, it is :meth:`delivered`.
        """
        started = self._clock()
        try:
            await write_within(write, self.slow_after)
        except SlowConsumer:
            record_drop = self.streams.record_drop
            for tick in ticks:
                record_drop(tick.symbol, self.client_type, "disconnected", 1)
            self.lost("disconnected")
            raise
        self.delivered(ticks, started)

    def sent(self, ticks: Iterable[Tick]) -> None:
        """A non-blocking write (a fan-out's ``try_write``) took ``ticks``: observe
        each one's publication latency (no slow decision: nothing waited)."""
        now_ns = self._wall_clock_ns()
        observe = self.latency.observe
        for tick in ticks:
            observe(max(0.0, (now_ns - tick.ts_ns) / 1e9))

    def lost(self, reason: str) -> None:
        """Count every tick still pending for this stream as dropped with ``reason``."""
        for key, reader in self.subscription.readers.items():
            self.streams.record_drop(key, self.client_type, reason, max(0, reader.lag))
