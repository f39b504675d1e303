"""A grpcio client that stops reading StreamPrices, end to end, through the stream outlet.

The outlet's one decision: a write the client does not take within
``SLOW_CONSUMER_TIMEOUT`` ends the stream (RESOURCE_EXHAUSTED on gRPC), its
slot is freed and the ticks it will never get are counted ``disconnected``; a
write that was slow but completed makes the next one the newest tick
(``conflated``); latency is observed once per delivered message.
"""

from __future__ import annotations

import threading
import time

import grpc
import pytest
import trio

from mdactors._proto import marketdata_pb2 as pb
from tests.conftest import BTC, call, metric_samples, running_service, stub, wait_for

pytestmark = pytest.mark.timeout(30)

SLOW_AFTER = 0.6
ENV = {"SLOW_CONSUMER_TIMEOUT": f"{SLOW_AFTER:g}s", "PRICE_UPDATE_INTERVAL": "5ms"}
#: A small HTTP/2 window that stays small (no BDP probing): a client that stops
#: reading blocks the server's writes after a few messages.
SMALL_WINDOW = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024)]
#: The stream must end this soon after the client stops reading: the timeout,
#: plus the few ticks that fill the window, plus slack for a loaded machine.
ENDED_WITHIN = SLOW_AFTER + 2.0
#: Ticks (5 ms apart) published between the stream's end and the test seeing it:
#: its 10 ms poll, and 200 ms more for a loaded machine.
UNSEEN_AFTER_END = 42


class Reader:
    """Reads a stream in a thread while :attr:`reading` is set; keeps what it got."""

    def __init__(self, stream: grpc.Future) -> None:
        self.stream = stream
        self.reading = threading.Event()
        self.reading.set()
        self.sequences: list[int] = []
        self.error: grpc.RpcError | None = None

    def run(self) -> None:
        try:
            for update in self.stream:
                self.sequences.append(update.sequence)
                self.reading.wait()
        except grpc.RpcError as error:
            self.error = error


def dropped(samples: dict, reason: str) -> float:
    labels = (("client_type", "grpc"), ("reason", reason), ("symbol", BTC))
    return samples.get(("market_data_dropped_updates_total", labels), 0.0)


async def test_a_grpcio_client_that_stops_reading_is_ended_and_frees_its_slot() -> None:
    async with running_service(ENV) as service:
        streams, market = service.context.streams, service.context.market
        channel = grpc.insecure_channel(f"127.0.0.1:{service.ports['grpc']}", options=SMALL_WINDOW)
        try:
            stream = stub(channel).StreamPrices(pb.StreamPricesRequest(symbols=[BTC]), timeout=25)
            reader = Reader(stream)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(call, reader.run)
                await wait_for(lambda: len(reader.sequences) >= 5)
                assert streams.active == 1

                # A pause longer than 50 ms but within the timeout: the blocked
                # write completes late, and the client gets the newest tick next.
                reader.reading.clear()
                paused_at = market.latest(BTC).seq
                await wait_for(lambda: market.latest(BTC).seq >= paused_at + 40)
                reader.reading.set()
                await wait_for(lambda: streams.dropped[(BTC, "grpc", "conflated")] > 0)
                await wait_for(lambda: len(reader.sequences) >= 40)
                gaps = [b - a for a, b in zip(reader.sequences, reader.sequences[1:], strict=False)]
                assert all(gap >= 1 for gap in gaps), "in order, none repeated"
                assert max(gaps) > 1, "ticks were conflated"
                assert streams.active == 1, "a slow write that completed keeps the stream"

                # Stop for good: ended by the outlet after the timeout, slot freed.
                reader.reading.clear()
                stopped = time.monotonic()
                await wait_for(lambda: streams.active == 0, within=ENDED_WITHIN + 1)
                ended_after = time.monotonic() - stopped
                published = market.latest(BTC).seq
                assert SLOW_AFTER - 0.1 <= ended_after <= ENDED_WITHIN
                received = len(reader.sequences)
                reader.reading.set()  # what was sent, then the status
            assert reader.error is not None
            assert reader.error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "too slow" in (reader.error.details() or "")
            assert len(reader.sequences) >= received
        finally:
            channel.close()

        samples = await metric_samples(service)
        conflated = dropped(samples, "conflated")
        lost = dropped(samples, "disconnected")
        observed = samples[
            ("market_data_publication_latency_seconds_count", (("client_type", "grpc"),))
        ]
        assert conflated >= 1 and lost >= 1
        # Latency once per delivered message, none for one the client never got.
        # A write cut at the timeout is lost as a whole (Outlet.write), even a
        # message of it that got out: the client may hold more than was observed.
        assert observed <= len(reader.sequences)
        # Every tick from the first update (the current state) on is counted once:
        # delivered, conflated or lost; only those published after the end (the
        # test polls every 10 ms) are in none.
        since_first = published - reader.sequences[0] + 1
        accounted = observed + conflated + lost
        assert since_first - UNSEEN_AFTER_END <= accounted <= since_first, (accounted, since_first)
