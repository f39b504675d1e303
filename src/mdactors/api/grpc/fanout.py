"""gRPC's ``StreamPrices`` on the stream outlet, with its fast path (see engine.fanout).

The stream's :class:`~mdactors.engine.outlet.Outlet` (the feed's) owns the
policy: conflation, the slow-consumer decision, drops, latency. gRPC supplies
only what is its own:

- render: :func:`price_message`, a tick's framed ``PriceUpdate`` for one
  symbol spelling, encoded once per tick and spelling for every stream;
- the blocking write: :meth:`~mdactors.api.grpc.transport.Lane.write` (the
  HTTP/2 window), handed to :meth:`Outlet.write` by :func:`stream_prices`;
- the non-blocking ``try_write``: HTTP/2 flow control, as
  :meth:`~mdactors.api.grpc.transport.Lane.try_send` plus one
  :meth:`~mdactors.api.grpc.transport.Writer.write_now` per connection;
- how it says "too slow": RESOURCE_EXHAUSTED
  (:func:`~mdactors.api.grpc.transport.slow_consumer_error`).

A call following one symbol at every tick parks once it is caught up; the
:class:`PriceFanOut` of that symbol's Topic then queues each tick on every
member's HTTP/2 stream and hands each connection's bytes to the kernel once
per pass, one write per connection per tick however many streams share it.
A member the ``try_write`` refuses (window full, too much unsent on its
connection), or with more than :data:`MAX_PENDING` ticks to catch up, goes
back to its own task, whose blocking write the outlet times.
"""

from __future__ import annotations

import logging
from functools import partial

import trio

from mdactors.api.grpc.transport import GrpcCall, Lane, Writer, grpc_message, slow_consumer_error
from mdactors.api.rpc import proto_codec
from mdactors.api.rpc.proto_codec import price_update_pb, symbol_prefix
from mdactors.api.rpc.service import PriceFeed
from mdactors.domain.tick import Tick
from mdactors.engine.fanout import FanOut, FanOuts
from mdactors.engine.outlet import Outlet, SlowConsumer
from mdactors.engine.topic import Reader

__all__ = [
    "MAX_PENDING",
    "FastStream",
    "PriceFanOut",
    "follow_fast",
    "price_fan_outs",
    "price_message",
    "stream_prices",
]

log = logging.getLogger("mdactors.grpc")

MAX_PENDING = 8
"""Most ticks the fan-out writes for one member in a pass.

Not a backlog policy (conflation is the outlet's): it bounds the work one
member adds to a pass every member waits for. A longer backlog is written by
the member's own task, in one blocking write.
"""


def price_message(tick: Tick, prefix: bytes) -> bytes:
    """The gRPC message of ``tick``'s update for the spelling whose ``prefix``
    (:func:`~mdactors.api.rpc.proto_codec.symbol_prefix`) it carries, cached on the
    tick: one encoding per tick and spelling, shared by every stream and path."""
    if not proto_codec.ENCODE_ONCE:
        return grpc_message(price_update_pb(tick, prefix))
    wire = tick.wire
    message = wire.get(prefix)  # bytes: no format's name (a str) can equal it
    if message is None:
        message = wire[prefix] = grpc_message(price_update_pb(tick, prefix))
    return message


class FastStream:
    """One ``StreamPrices`` call whose task is parked while the fan-out serves it."""

    __slots__ = ("fast", "kick", "lane", "outlet", "prefix", "reader")

    def __init__(self, reader: Reader[Tick], lane: Lane, prefix: bytes, outlet: Outlet) -> None:
        self.reader = reader
        self.lane = lane
        self.prefix = prefix
        self.outlet = outlet
        self.kick = trio.CancelScope()
        self.fast = False

    def wake_writer(self) -> None:
        """Hand the call back to its task."""
        self.fast = False
        self.kick.cancel()


class PriceFanOut(FanOut[FastStream]):
    """The ``StreamPrices`` fast path of one symbol's Topic."""

    def fan_out(self) -> None:
        writers: dict[int, Writer] = {}
        for member in self.members:
            try:
                delivered = member.fast and self._deliver(member)
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
        if self._deliver(member):
            member.lane.writer.write_now()

    def _deliver(self, member: FastStream) -> bool:
        """Queue ``member``'s pending ticks on its lane; whether any was queued."""
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
            # price_message's cache, read inline: this is the per-member cost of a tick.
            message = tick.wire.get(prefix) or price_message(tick, prefix)
            if not lane.try_send(message):
                reader.cursor = start + index
                items = items[:index]
                member.wake_writer()
                break
        member.outlet.observe(((self.key, items),))
        self.writes += len(items)
        return bool(items)


def price_fan_outs() -> FanOuts[PriceFanOut]:
    """The ``StreamPrices`` fan-outs of one gRPC server."""
    return FanOuts(PriceFanOut)


async def stream_prices(fan_outs: FanOuts[PriceFanOut], feed: PriceFeed, call: GrpcCall) -> None:
    """Write ``feed`` to ``call`` until the stream ends: the current state, then
    every tick through the feed's outlet, by the fan-out while it can.

    Raises :class:`~mdactors.api.rpc.service.RpcError`: RESOURCE_EXHAUSTED for
    a client too slow, UNAVAILABLE on drain.
    """
    lane = call.lane
    assert lane is not None, "a server-streaming call has a lane"
    outlet = feed.outlet
    prefixes = {spelling: symbol_prefix(spelling) for spelling in feed.plan.spellings.values()}
    while True:
        batch = await feed.next_batch()
        messages = [price_message(tick, prefixes[spelling]) for spelling, tick in batch]
        try:
            taken = [(tick.symbol, (tick,)) for _, tick in batch]
            await outlet.write(partial(lane.write, messages), taken)
        except SlowConsumer as slow:
            raise slow_consumer_error(slow) from None
        # Caught up: the symbol's fan-out may serve the call for a while.
        await follow_fast(fan_outs, feed, lane, prefixes)


async def follow_fast(
    fan_outs: FanOuts[PriceFanOut], feed: PriceFeed, lane: Lane, prefixes: dict[str, bytes]
) -> None:
    """Let the fan-out serve ``feed`` while it can; return when the call's task must
    take over (at once when the feed is not eligible, see :meth:`PriceFeed.fast_path`)."""
    # A client just found behind gets the newest tick next (conflation), not a catch-up.
    route = None if feed.outlet.behind else feed.fast_path(MAX_PENDING)
    if route is None:
        return
    key, topic, reader = route
    member = FastStream(reader, lane, prefixes[feed.plan.spellings[key]], feed.outlet)
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
