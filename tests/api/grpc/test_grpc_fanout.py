"""The gRPC fast path of StreamPrices: caught-up streams served by their symbol's fan-out."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import h2.config
import h2.connection
import h2.events
import pytest
import trio

from mdactors._proto import marketdata_pb2 as pb
from mdactors.api.grpc import fanout
from mdactors.api.grpc.fanout import PriceFanOut, price_fan_outs
from mdactors.api.grpc.service import build_server
from mdactors.api.grpc.transport import grpc_message
from mdactors.api.rpc.proto_codec import symbol_prefix
from mdactors.app import Service
from mdactors.domain.tick import Tick
from mdactors.engine.fanout import FanOuts
from tests.conftest import BTC, call, rpc_error, running_service, stub, take, wait_for

pytestmark = pytest.mark.timeout(30)


@asynccontextmanager
async def own_grpc_server(
    service: Service,
) -> AsyncIterator[tuple[grpc.Channel, FanOuts[PriceFanOut]]]:
    """A second gRPC server on the service's context whose fan-outs the test can see,
    and a grpcio channel (one HTTP/2 connection) to it."""
    fan_outs = price_fan_outs()
    server = build_server(service.context, fan_outs)
    async with trio.open_nursery() as nursery:
        fan_outs.nursery = nursery
        port = await nursery.start(server.serve, trio.sleep_forever)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            yield channel, fan_outs
        finally:
            channel.close()
            nursery.cancel_scope.cancel()


async def test_streams_sharing_a_connection_get_every_tick_from_the_fan_out() -> None:
    async with running_service() as service, own_grpc_server(service) as (channel, fan_outs):
        streams = [
            stub(channel).StreamPrices(pb.StreamPricesRequest(symbols=[spelling]), timeout=20)
            for spelling in ("BTC/USD", "BTC-USD", "btc")
        ]
        seen: dict[str, list[pb.PriceUpdate]] = {}
        async with trio.open_nursery() as nursery:
            for index, stream in enumerate(streams):

                async def read(stream: grpc.Future = stream, index: int = index) -> None:
                    seen[str(index)] = await call(lambda: take(stream, 25))

                nursery.start_soon(read)
        fan_out = fan_outs.by_key[BTC]
        for (index, updates), spelling in zip(
            sorted(seen.items()), ("BTC/USD", "BTC-USD", "btc"), strict=True
        ):
            sequences = [update.sequence for update in updates]
            assert sequences == list(range(sequences[0], sequences[0] + 25)), index
            assert {update.symbol for update in updates} == {spelling}, "spelling echoed"
        by_sequence: dict[int, set[float]] = {}
        for updates in seen.values():
            for update in updates:
                by_sequence.setdefault(update.sequence, set()).add(update.price)
        assert all(len(prices) == 1 for prices in by_sequence.values())
        # 75 updates; a call whose window fills (a loaded machine) is served by its
        # own task until it catches up, so only "many" is certain.
        assert fan_out.writes >= 20, "updates went out through the fan-out"
        for stream in streams:
            stream.cancel()
        await wait_for(lambda: service.context.streams.active == 0)
        await wait_for(lambda: not fan_out.members)


async def test_a_stream_with_an_update_interval_is_not_served_by_the_fan_out() -> None:
    async with running_service() as service, own_grpc_server(service) as (channel, fan_outs):
        request = pb.StreamPricesRequest(symbols=[BTC], update_interval_ms=60)
        stream = stub(channel).StreamPrices(request, timeout=20)
        updates = await call(lambda: take(stream, 4))
        assert len(updates) == 4
        assert fan_outs.by_key == {}
        stream.cancel()
        await wait_for(lambda: service.context.streams.active == 0)


async def test_drain_ends_a_fan_out_served_stream_with_unavailable() -> None:
    async with running_service() as service, own_grpc_server(service) as (channel, fan_outs):
        stream = stub(channel).StreamPrices(pb.StreamPricesRequest(symbols=[BTC]), timeout=20)
        await call(lambda: take(stream, 3))
        await wait_for(lambda: BTC in fan_outs.by_key and bool(fan_outs.by_key[BTC].members))
        service.context.streams.stop_all()

        def rest() -> grpc.StatusCode:
            try:
                for _ in stream:
                    pass
            except grpc.RpcError as error:
                return error.code()
            raise AssertionError("the stream ended without a status")

        assert await call(rest) is grpc.StatusCode.UNAVAILABLE


class RawStreams:
    """Many StreamPrices calls on one bare HTTP/2 connection; reads only when told to."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.buffers: dict[int, bytes] = {}
        self.sequences: dict[int, list[int]] = {}

    @classmethod
    async def open(cls, port: int, calls: int) -> RawStreams:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect(("127.0.0.1", port))
        client = cls(trio.SocketStream(sock))
        client.h2.initiate_connection()
        client.h2.increment_flow_control_window(2**30)
        request = pb.StreamPricesRequest(symbols=[BTC]).SerializeToString()
        for _ in range(calls):
            stream_id = client.h2.get_next_available_stream_id()
            client.h2.send_headers(
                stream_id,
                [
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":path", "/marketdata.MarketDataService/StreamPrices"),
                    (":authority", "localhost"),
                    ("content-type", "application/grpc"),
                    ("te", "trailers"),
                ],
            )
            client.h2.increment_flow_control_window(2**30, stream_id)
            client.h2.send_data(stream_id, grpc_message(request), end_stream=True)
            client.buffers[stream_id] = b""
            client.sequences[stream_id] = []
        await client.stream.send_all(client.h2.data_to_send())
        return client

    async def read(self) -> None:
        """Read once; every DATA frame must parse (h2 raises on a corrupt connection)."""
        data = await self.stream.receive_some(65_536)
        assert data, "connection closed"
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                buffer = self.buffers[event.stream_id] + event.data
                while len(buffer) >= 5 and len(buffer) >= 5 + int.from_bytes(buffer[1:5], "big"):
                    size = int.from_bytes(buffer[1:5], "big")
                    update = pb.PriceUpdate.FromString(buffer[5 : 5 + size])
                    self.sequences[event.stream_id].append(update.sequence)
                    buffer = buffer[5 + size :]
                self.buffers[event.stream_id] = buffer
            elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                raise AssertionError(f"stream {event.stream_id} ended: {event}")
        outgoing = self.h2.data_to_send()
        if outgoing:
            await self.stream.send_all(outgoing)


async def test_bytes_the_socket_did_not_take_go_out_first_and_whole() -> None:
    env = {"PRICE_UPDATE_INTERVAL": "2ms", "SLOW_CONSUMER_TIMEOUT": "30s"}
    async with running_service(env) as service:
        fan_outs = price_fan_outs()
        server = build_server(service.context, fan_outs)
        async with trio.open_nursery() as nursery:
            fan_outs.nursery = nursery
            port = await nursery.start(server.serve, trio.sleep_forever)
            client = await RawStreams.open(port, calls=100)
            with trio.fail_after(20):  # 100 streams starting on a busy machine
                while min(len(seen) for seen in client.sequences.values()) < 2:
                    await client.read()
            assert server.dispatcher is not None
            [connection] = server.dispatcher.connections
            assert connection.socket is not None
            writer = connection.socket.writer
            # Nobody reads: the kernel buffers fill and a write is only partly taken.
            await wait_for(lambda: writer.deferred > 0, within=15)
            with trio.fail_after(10):
                caught_up = service.context.market.latest(BTC).seq
                while min(seen[-1] for seen in client.sequences.values()) < caught_up:
                    await client.read()
            for seen in client.sequences.values():
                assert seen == sorted(set(seen)), "in order, none repeated"
            nursery.cancel_scope.cancel()


async def test_a_fan_out_failure_for_one_stream_hands_it_back_and_spares_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running_service() as service, own_grpc_server(service) as (channel, fan_outs):
        calls = [
            stub(channel).StreamPrices(pb.StreamPricesRequest(symbols=[spelling]), timeout=20)
            for spelling in ("BTC/USD", "BTC-USD")
        ]
        for stream in calls:
            await call(lambda stream=stream: take(stream, 2))
        await wait_for(lambda: BTC in fan_outs.by_key and len(fan_outs.by_key[BTC].members) == 2)
        render = fanout.price_message
        victim = symbol_prefix("BTC-USD")

        def failing(tick: Tick, prefix: bytes) -> bytes:
            if prefix == victim:
                raise RuntimeError("a framing bug")
            return render(tick, prefix)

        monkeypatch.setattr(fanout, "price_message", failing)
        spared, failed = calls
        updates = await call(lambda: take(spared, 10))
        sequences = [update.sequence for update in updates]
        assert sequences == list(range(sequences[0], sequences[0] + 10))
        # The failing stream went back to its own task, which fails alone when it retries.
        error = await call(lambda: rpc_error(lambda: take(failed, 10)))
        assert error.code() is grpc.StatusCode.INTERNAL
        spared.cancel()
        await wait_for(lambda: service.context.streams.active == 0)
