"""The gRPC fast path of ``StreamPrices`` (see :mod:`mdactors.engine.fanout`).

A ``StreamPrices`` call following one symbol at every tick parks once it is
caught up; the :class:`PriceFanOut` of that symbol's Topic then frames each
tick once per symbol spelling (gRPC prefix included), queues it on every
member's HTTP/2 stream through its :class:`~mdactors.api.grpc.transport.Lane`
and hands each connection's bytes to the kernel once per pass — one write
per connection per tick, however many streams share it. A member whose
window is full, whose connection has too much unsent or which fell more than
:data:`MAX_PENDING` ticks behind goes back to its own task (conflation and the
slow-consumer timeout live there).
"""

from __future__ import annotations

import logging

import trio

from mdactors.api.grpc.transport import GrpcCall, Lane, Writer, grpc_message
from mdactors.api.rpc.proto_codec import price_update_pb
from mdactors.api.rpc.service import PriceFeed
from mdactors.domain.tick import Tick
from mdactors.engine.fanout import FanOut, FanOuts
from mdactors.engine.topic import Reader

__all__ = ["MAX_PENDING", "FastStream", "PriceFanOut", "follow_fast", "price_fan_outs"]

log = logging.getLogger("mdactors.grpc")

MAX_PENDING = 8
"""Most pending ticks a member may have and still be served by the fan-out."""


class FastStream:
    """One ``StreamPrices`` call whose task is parked while the fan-out serves it."""

    __slots__ = ("fast", "kick", "lane", "prefix", "reader")

    def __init__(self, reader: Reader[Tick], lane: Lane, prefix: bytes) -> None:
        self.reader = reader
        self.lane = lane
        self.prefix = prefix
        self.kick = trio.CancelScope()
        self.fast = False

    def wake_writer(self) -> None:
        """Hand the call back to its task."""
        self.fast = False
        self.kick.cancel()


class PriceFanOut(FanOut[FastStream]):
    """The ``StreamPrices`` fast path of one symbol's Topic."""

    def fan_out(self) -> None:
        messages: dict[tuple[bytes, int], bytes] = {}
        writers: dict[int, Writer] = {}
        for member in self.members:
            try:
                delivered = member.fast and self._deliver(member, messages)
            except Exception:  # one call's bug must not end every stream
                log.exception("grpc fan-out failed for a stream")
                member.wake_writer()  # its own task serves it (and fails alone if it must)
                continue
            if delivered:
                writer = member.lane.writer
                writers[id(writer)] = writer
        for writer in writers.values():
            writer.write_now()

    def catch_up(self, member: FastStream) -> None:
        """Serve a member that joined with ticks pending (else they would wait for the next)."""
        if self._deliver(member, {}):
            member.lane.writer.write_now()

    def _deliver(self, member: FastStream, messages: dict[tuple[bytes, int], bytes]) -> bool:
        """Queue ``member``'s pending ticks on its lane; whether any was queued.

        ``messages`` caches the framed message per spelling and tick for the pass.
        """
        reader = member.reader
        lag = reader.lag
        if lag <= 0:
            return False
        if lag > MAX_PENDING:
            member.wake_writer()
            return False
        lane = member.lane
        prefix = member.prefix
        start = reader.cursor
        items, _ = reader.take(lag)
        for index, tick in enumerate(items):
            slot = (prefix, tick.seq)
            message = messages.get(slot)
            if message is None:
                message = messages[slot] = grpc_message(price_update_pb(tick, prefix))
            if not lane.try_send(message):
                reader.cursor = start + index
                member.wake_writer()
                return index > 0
            lane.on_message(tick.ts_ns)
            self.writes += 1
        return True


def price_fan_outs() -> FanOuts[PriceFanOut]:
    """The ``StreamPrices`` fan-outs of one gRPC server."""
    return FanOuts(PriceFanOut)


async def follow_fast(
    fan_outs: FanOuts[PriceFanOut], feed: PriceFeed, call: GrpcCall, prefixes: dict[str, bytes]
) -> None:
    """Let the fan-out serve ``feed`` while it can; return when the call's task must
    take over (at once when the feed is not eligible, see :meth:`PriceFeed.fast_path`)."""
    lane = call.lane
    # A client just found behind gets the newest tick next (conflation), not a catch-up.
    route = None if call.behind else feed.fast_path(MAX_PENDING)
    if lane is None or route is None:
        return
    key, topic, reader = route
    member = FastStream(reader, lane, prefixes[feed.plan.spellings[key]])
    fan_out = fan_outs.join(member, key, topic)
    if fan_out is None:
        return
    try:
        with member.kick:
            member.fast = True
            # Joining behind by a few ticks lets a busy stream leave the slow path.
            fan_out.catch_up(member)
            await feed.wait_ended()
    finally:
        member.fast = False
        fan_outs.leave(member, key)
