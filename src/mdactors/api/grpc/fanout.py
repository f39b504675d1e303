"""gRPC's ``StreamPrices`` on the stream outlet and the engine's fast path.

The stream's :class:`~mdactors.engine.outlet.Outlet` (the feed's) owns the
policy: conflation, the slow-consumer decision, drops, latency; the symbol's
:class:`~mdactors.engine.fanout.StreamFanOut` owns the fast path. gRPC
supplies only what is its own (:class:`PriceStream`):

- render: :func:`price_message`, a tick's framed ``PriceUpdate`` for one
  symbol spelling, encoded once per tick and spelling for every stream;
- the blocking write: :meth:`~mdactors.api.grpc.transport.Lane.write` (the
  HTTP/2 window), handed to :meth:`Outlet.write` by :func:`stream_prices`;
- the non-blocking ``try_write``: HTTP/2 flow control,
  :meth:`~mdactors.api.grpc.transport.Lane.try_send` (whole or nothing), the
  bytes then handed to the kernel once per connection and pass
  (:class:`PriceFanOut`), however many streams share the connection;
- how it says "too slow": RESOURCE_EXHAUSTED
  (:func:`~mdactors.api.grpc.transport.slow_consumer_error`).

A call following one symbol at every tick parks once it is caught up and the
fan-out serves it; one the ``try_write`` refuses (window full, too much
unsent on its connection) goes back to its own task, whose blocking write the
outlet times, and rejoins once caught up.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from functools import partial

import trio

from mdactors.api.grpc.transport import GrpcCall, Lane, Writer, grpc_message, slow_consumer_error
from mdactors.api.rpc import proto_codec
from mdactors.api.rpc.proto_codec import price_update_pb, symbol_prefix
from mdactors.api.rpc.service import PriceFeed
from mdactors.domain.tick import Tick
from mdactors.engine.fanout import FanOuts, StreamFanOut
from mdactors.engine.outlet import Batch, Outlet, SlowConsumer

__all__ = [
    "PriceFanOut",
    "PriceStream",
    "follow_fast",
    "price_fan_outs",
    "price_message",
    "stream_prices",
]

log = logging.getLogger("mdactors.grpc")


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


class PriceStream:
    """One ``StreamPrices`` call as the fast path sees it (a
    :class:`~mdactors.engine.fanout.FastStream`), while its task is parked."""

    __slots__ = ("fan_out", "fast", "kick", "lane", "outlet", "prefix", "sent_at", "take_limit")

    def __init__(self, lane: Lane, prefix: bytes, outlet: Outlet, take_limit: int) -> None:
        self.lane = lane
        self.prefix = prefix
        self.outlet = outlet
        self.take_limit = take_limit
        """The Topic's capacity: a pass carries every tick it took (the fast path
        serves streams that keep up; conflation is the call's task's)."""
        self.sent_at = 0.0
        self.kick = trio.CancelScope()
        self.fast = False
        self.fan_out: PriceFanOut | None = None

    def wake_writer(self) -> None:
        """Hand the call back to its task."""
        self.fast = False
        if self.fan_out is not None:
            self.fan_out.release(self)
        self.kick.cancel()

    def rendering(self) -> Hashable:
        """Streams of one spelling get the same bytes."""
        return self.prefix

    def render(self, key: str, items: list[Tick]) -> bytes:
        """The framed updates of ``items`` in this stream's spelling."""
        prefix = self.prefix
        return b"".join([price_message(tick, prefix) for tick in items])

    def try_write(self, data: bytes) -> int:
        """Queue ``data`` on the HTTP/2 stream if the window takes it whole: ``len(data)``,
        else ``0``, which the pass takes as "would block" (it then hands the queued
        bytes to the kernel, see :class:`PriceFanOut`)."""
        try:
            return len(data) if self.lane.try_send(data) else 0
        except Exception:  # one call's bug must not end every stream: its task takes over
            log.exception("grpc fast path failed for a stream")
            return 0

    def owe(self, rest: memoryview, batch: Batch) -> None:
        """Never called: :meth:`try_write` takes the bytes whole or not at all."""
        raise AssertionError("a gRPC try_write is never partial")


class PriceFanOut(StreamFanOut[PriceStream]):
    """The ``StreamPrices`` fast path of one symbol's Topic: the engine's pass, then
    one kernel write per connection for every stream the pass queued bytes on."""

    def fan_out(self) -> None:
        super().fan_out()
        writers: dict[int, Writer] = {}
        for group in self.groups.values():
            for member in group.members:
                writer = member.lane.writer
                writers[id(writer)] = writer
        for writer in writers.values():
            writer.write_now()


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
    route = None if feed.outlet.behind else feed.fast_path()
    if route is None:
        return
    key, topic = route
    member = PriceStream(lane, prefixes[feed.plan.spellings[key]], feed.outlet, topic.capacity)
    fan_out = member.fan_out = fan_outs.join(member, key, topic)
    if fan_out is None:
        return
    try:
        with member.kick:
            member.fast = True
            fan_out.catch_up(member)  # it joins the next pass if still caught up
            await feed.wait_ended()
    finally:
        member.fast = False
        fan_outs.leave(member, key)
