"""The gRPC front end on a loopback port, with grpcio (sync and aio) and raw h2 clients."""

from __future__ import annotations

import asyncio
import errno
import itertools
import socket
import time

import grpc
import pytest
import trio

from mdactors._proto import marketdata_pb2 as pb
from mdactors._proto import marketdata_pb2_grpc as pb_grpc
from mdactors._proto.grpc_health.v1 import health_pb2, health_pb2_grpc
from mdactors.app import Service
from tests.conftest import BTC, RawGrpc, call, grpc_service, rpc_error, stub, take, wait_for

# -- unary -----------------------------------------------------------------


async def test_get_price_answers_live_price_and_echoes_spelling() -> None:
    async with grpc_service() as (service, channel):
        response = await call(
            lambda: stub(channel).GetPrice(pb.GetPriceRequest(symbol="btc-usd"), timeout=5)
        )
        latest = service.context.market.latest(BTC)
        assert response.symbol == "btc-usd"
        assert response.key == BTC and response.live
        assert response.price > 0 and response.bid < response.ask
        assert response.source == "market-data-simulator"
        assert 1 <= response.sequence <= latest.seq
        assert abs(response.timestamp.ToNanoseconds() - latest.ts_ns) < 60 * 10**9


async def test_get_price_of_unknown_symbol_is_synthetic_and_deterministic() -> None:
    async with grpc_service() as (_, channel):
        first, second = await call(
            lambda: [
                stub(channel).GetPrice(pb.GetPriceRequest(symbol=name), timeout=5)
                for name in ("ZZZ-EUR", "zzz/eur")
            ]
        )
        assert first.price > 0 and first.price == second.price
        assert first.symbol == "ZZZ-EUR" and second.symbol == "zzz/eur"
        assert not first.live and first.key == "ZZZ/EUR"
        assert first.source == "market-data-simulator"


@pytest.mark.parametrize("symbol", ["", "!!", "A/B/C", "X" * 40])
async def test_get_price_of_malformed_symbol_is_invalid_argument(symbol: str) -> None:
    async with grpc_service() as (_, channel):
        error = await call(
            lambda: rpc_error(
                lambda: stub(channel).GetPrice(pb.GetPriceRequest(symbol=symbol), timeout=5)
            )
        )
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "symbol" in error.details()


async def test_health_check_details_count_active_streams() -> None:
    async with grpc_service() as (service, channel):
        md = stub(channel)
        stream = md.StreamPrices(pb.StreamPricesRequest(symbols=[BTC]), timeout=10)
        await call(lambda: next(stream))
        response = await call(lambda: md.HealthCheck(pb.HealthCheckRequest(), timeout=5))
        assert response.status == pb.SERVING
        assert response.details["service_name"] == service.settings.service_name
        assert response.details["service_version"] == service.settings.service_version
        assert response.details["active_streams"] == "1"
        unknown = await call(
            lambda: md.HealthCheck(pb.HealthCheckRequest(service="nope"), timeout=5)
        )
        assert unknown.status == pb.SERVICE_UNKNOWN
        stream.cancel()


async def test_standard_health_check_and_watch_follow_the_drain() -> None:
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    # Long enough for the Check below to be answered before the listeners stop.
    async with grpc_service({"DRAIN_DELAY": "1500ms"}) as (service, channel):
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "market-data"):
            response = await call(
                lambda name=name: health.Check(
                    health_pb2.HealthCheckRequest(service=name), timeout=5
                )
            )
            assert response.status == serving
        error = await call(
            lambda: rpc_error(
                lambda: health.Check(health_pb2.HealthCheckRequest(service="other"), timeout=5)
            )
        )
        assert error.code() is grpc.StatusCode.NOT_FOUND
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert (await call(lambda: next(watch))).status == serving
        service.context.lifecycle.begin_drain()
        assert (await call(lambda: next(watch))).status == not_serving
        response = await call(
            lambda: health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        )
        assert response.status == not_serving
        end = await call(lambda: rpc_error(lambda: next(watch)))
        assert end.code() is grpc.StatusCode.UNAVAILABLE


# -- streaming -------------------------------------------------------------


async def test_stream_starts_with_current_state_then_every_tick() -> None:
    async with grpc_service() as (service, channel):
        await call(lambda: grpc.channel_ready_future(channel).result(timeout=10))
        before = service.context.market.latest(BTC).seq
        stream = stub(channel).StreamPrices(
            pb.StreamPricesRequest(symbols=["btc-usd", "ETH", "BTC/USD"]), timeout=10
        )
        updates = await call(lambda: take(stream, 12))
        stream.cancel()
        by_key: dict[str, list[pb.PriceUpdate]] = {}
        for update in updates:
            by_key.setdefault(update.key, []).append(update)
        assert set(by_key) == {BTC, "ETH/USD"}
        btc = by_key[BTC]
        assert {update.symbol for update in btc} == {"btc-usd"}  # first spelling echoed
        assert before <= btc[0].sequence <= before + 10  # the live tick (50 ms apart), not history
        sequences = [update.sequence for update in btc]
        assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
        first = btc[0]
        assert first.price > 0 and first.bid < first.ask
        assert first.source == "market-data-simulator"
        assert first.change_info.daily_high >= first.change_info.daily_low > 0
        assert first.timestamp.ToNanoseconds() == first.timestamp_ns


async def test_update_interval_conflates_to_newest_per_interval() -> None:
    async with grpc_service() as (service, channel):
        stream = stub(channel).StreamPrices(
            pb.StreamPricesRequest(symbols=[BTC], update_interval_ms=250), timeout=10
        )
        updates = await call(lambda: take(stream, 4))
        stream.cancel()
        stamps = [update.timestamp_ns for update in updates]
        sequences = [update.sequence for update in updates]
        # 50 ms ticks, 250 ms interval: each update is the newest, ~5 ticks apart (a tick
        # due at the same instant as the batch may land just after it: 150 ms leaves room).
        for earlier, later in itertools.pairwise(stamps[1:]):
            assert later - earlier >= 150_000_000
        assert all(b - a >= 3 for a, b in itertools.pairwise(sequences[1:]))
        assert service.context.streams.dropped[(BTC, "grpc", "conflated")] == 0


@pytest.mark.parametrize(
    ("request_", "code", "needle"),
    [
        (pb.StreamPricesRequest(), grpc.StatusCode.INVALID_ARGUMENT, "at least one"),
        (
            pb.StreamPricesRequest(symbols=["BTC", "NOPE/USD"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "NOPE/USD",
        ),
        (pb.StreamPricesRequest(symbols=["B T C"]), grpc.StatusCode.INVALID_ARGUMENT, "malformed"),
        (
            pb.StreamPricesRequest(symbols=[BTC], update_interval_ms=-1),
            grpc.StatusCode.INVALID_ARGUMENT,
            "update_interval_ms",
        ),
        (
            pb.StreamPricesRequest(symbols=[BTC], update_interval_ms=2_000_000_000),
            grpc.StatusCode.INVALID_ARGUMENT,
            "update_interval_ms",
        ),
        (
            pb.StreamPricesRequest(symbols=[f"S{i}" for i in range(5000)]),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "at most 100 symbols",
        ),
    ],
)
async def test_bad_stream_requests_get_a_status_naming_the_problem(
    request_: pb.StreamPricesRequest, code: grpc.StatusCode, needle: str
) -> None:
    async with grpc_service() as (_, channel):
        error = await call(
            lambda: rpc_error(lambda: list(stub(channel).StreamPrices(request_, timeout=5)))
        )
        assert error.code() is code
        assert needle in error.details()


async def test_cancel_mid_stream_releases_the_subscription() -> None:
    async with grpc_service() as (service, channel):
        stream = stub(channel).StreamPrices(
            pb.StreamPricesRequest(symbols=[BTC], update_interval_ms=5000), timeout=30
        )
        await call(lambda: next(stream))
        streams = service.context.streams
        assert streams.active == 1 and streams.subscribers[(BTC, "grpc")] == 1
        stream.cancel()
        # The stream waits out a 5 s interval: the reset must end it sooner.
        await wait_for(lambda: streams.active == 0, within=3)
        assert streams.subscribers[(BTC, "grpc")] == 0


async def test_deadline_ends_the_stream_with_deadline_exceeded() -> None:
    async with grpc_service() as (service, channel):
        stream = stub(channel).StreamPrices(pb.StreamPricesRequest(symbols=[BTC]), timeout=0.4)
        started = time.monotonic()
        error = await call(lambda: rpc_error(lambda: list(stream)))
        assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 3
        await wait_for(lambda: service.context.streams.active == 0)


async def test_stream_limit_is_resource_exhausted() -> None:
    async with grpc_service({"MAX_SUBSCRIBERS": "2"}) as (_, channel):
        md = stub(channel)
        open_streams = [
            md.StreamPrices(pb.StreamPricesRequest(symbols=[BTC]), timeout=10) for _ in range(2)
        ]
        for stream in open_streams:
            await call(lambda stream=stream: next(stream))
        error = await call(
            lambda: rpc_error(
                lambda: next(md.StreamPrices(pb.StreamPricesRequest(symbols=[BTC]), timeout=5))
            )
        )
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        for stream in open_streams:
            stream.cancel()


async def test_drain_ends_streams_with_unavailable() -> None:
    async with grpc_service() as (service, channel):
        stream = stub(channel).StreamPrices(pb.StreamPricesRequest(symbols=[BTC]), timeout=10)
        await call(lambda: next(stream))
        service.context.lifecycle.begin_drain()
        error = await call(lambda: rpc_error(lambda: list(stream)))
        assert error.code() is grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in error.details()


async def test_publication_latency_is_recorded_for_grpc() -> None:
    async with grpc_service() as (service, channel):
        stream = stub(channel).StreamPrices(pb.StreamPricesRequest(symbols=[BTC]), timeout=10)
        await call(lambda: take(stream, 3))
        stream.cancel()
        registry = service.context.metrics.registry
        count = registry.get_sample_value(
            "market_data_publication_latency_seconds_count", {"client_type": "grpc"}
        )
        assert count is not None and count >= 3


# -- many subscribers (grpc.aio) -------------------------------------------


async def _aio_subscribers(port: int, count: int, messages: int) -> list[list[tuple[int, float]]]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        md = pb_grpc.MarketDataServiceStub(channel)

        async def one() -> list[tuple[int, float]]:
            seen = []
            stream = md.StreamPrices(pb.StreamPricesRequest(symbols=[BTC]), timeout=20)
            async for update in stream:
                seen.append((update.sequence, update.price))
                if len(seen) == messages:
                    stream.cancel()
                    break
            return seen

        return await asyncio.gather(*(one() for _ in range(count)))


async def test_200_subscribers_see_identical_prices_for_each_sequence() -> None:
    async with grpc_service() as (service, _):
        port = service.ports["grpc"]
        results = await trio.to_thread.run_sync(lambda: asyncio.run(_aio_subscribers(port, 200, 5)))
        assert len(results) == 200
        prices: dict[int, set[float]] = {}
        for seen in results:
            assert len(seen) == 5
            sequences = [sequence for sequence, _ in seen]
            assert sequences == list(range(sequences[0], sequences[0] + 5))
            for sequence, price in seen:
                prices.setdefault(sequence, set()).add(price)
        assert all(len(values) == 1 for values in prices.values())
        assert max(len(seen) for seen in results) == 5
        await wait_for(lambda: service.context.streams.active == 0)


# -- raw HTTP/2: malformed, oversized, slow --------------------------------


async def _raw_status(port: int, path: str, message: bytes) -> tuple[int, str]:
    client = await RawGrpc.connect(port)
    await client.start(path, message)
    with trio.fail_after(5):
        status = await client.wait_trailers()
    await client.stream.aclose()
    return status


async def test_malformed_protobuf_and_unknown_methods_get_statuses() -> None:
    async with grpc_service() as (service, channel):
        port = service.ports["grpc"]
        garbage = b"\x0a\xff\xff\xff\xff\x0f"  # field 1, absurd length
        code, message = await _raw_status(port, "/marketdata.MarketDataService/GetPrice", garbage)
        assert code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "malformed" in message
        code, _ = await _raw_status(port, "/marketdata.MarketDataService/Nope", b"")
        assert code == grpc.StatusCode.UNIMPLEMENTED.value[0]
        code, _ = await _raw_status(port, "/other.Service/GetPrice", b"")
        assert code == grpc.StatusCode.UNIMPLEMENTED.value[0]
        # grpcio sees the same, and the server keeps serving.
        method = channel.unary_unary("/marketdata.MarketDataService/GetPrice")
        error = await call(lambda: rpc_error(lambda: method(garbage, timeout=5)))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        ok = await call(lambda: stub(channel).GetPrice(pb.GetPriceRequest(symbol="ETH"), timeout=5))
        assert ok.price > 0


async def test_oversized_request_is_resource_exhausted_and_others_keep_working() -> None:
    async with grpc_service() as (_, channel):
        md = stub(channel)
        error = await call(
            lambda: rpc_error(
                lambda: md.GetPrice(pb.GetPriceRequest(symbol="X" * 200_000), timeout=5)
            )
        )
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        ok = await call(lambda: md.GetPrice(pb.GetPriceRequest(symbol="BTC"), timeout=5))
        assert ok.price > 0


async def test_slow_subscriber_is_conflated_then_disconnected_without_delaying_a_fast_one() -> None:
    env = {"SLOW_CONSUMER_TIMEOUT": "600ms", "PRICE_UPDATE_INTERVAL": "20ms"}
    async with grpc_service(env) as (service, channel):
        fast = stub(channel).StreamPrices(pb.StreamPricesRequest(symbols=[BTC]), timeout=20)
        fast_seen: list[tuple[int, int]] = []  # (sequence, receive - publish ns)

        def read_fast() -> None:
            try:
                for update in fast:
                    fast_seen.append((update.sequence, time.time_ns() - update.timestamp_ns))
            except grpc.RpcError as error:
                if error.code() is not grpc.StatusCode.CANCELLED:
                    raise

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, read_fast)
            try:
                await _slow_client_scenario(service)
            finally:
                fast.cancel()
        sequences = [sequence for sequence, _ in fast_seen]
        assert len(sequences) > 20
        assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
        assert sorted(latency for _, latency in fast_seen)[len(fast_seen) // 2] < 100_000_000


async def _slow_client_scenario(service: Service) -> None:
    market, streams = service.context.market, service.context.streams
    # A window of ~2 messages, then the slow client stops reading.
    slow = await RawGrpc.connect(service.ports["grpc"], window=400)
    request = pb.StreamPricesRequest(symbols=[BTC]).SerializeToString()
    stream_id = await slow.start("/marketdata.MarketDataService/StreamPrices", request)
    with trio.fail_after(5):
        await slow.messages_until(2)
    blocked_at = market.latest(BTC).seq
    await wait_for(lambda: market.latest(BTC).seq >= blocked_at + 5)
    await slow.ack(stream_id)  # room again: the held update, then the newest one
    with trio.fail_after(5):
        await slow.messages_until(4)
    sequences = [pb.PriceUpdate.FromString(message).sequence for message in slow.messages]
    assert sequences[3] - sequences[2] >= 4
    assert streams.dropped[(BTC, "grpc", "conflated")] >= 3
    # ... then it stays behind past SLOW_CONSUMER_TIMEOUT and is disconnected.
    with trio.fail_after(5):
        code, message = await slow.wait_trailers()
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert "too slow" in message


# -- binding -----------------------------------------------------------------


async def test_grpc_binds_the_configured_host_without_reuseport() -> None:
    async with grpc_service() as (service, _):
        port = service.ports["grpc"]
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            with pytest.raises(OSError) as raised:
                probe.bind(("127.0.0.1", port))
            assert raised.value.errno == errno.EADDRINUSE
        finally:
            probe.close()


async def test_a_handler_bug_answers_internal_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from mdactors.api.rpc.service import MarketDataRpc

    def broken(self: MarketDataRpc, request: pb.GetPriceRequest) -> pb.GetPriceResponse:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(MarketDataRpc, "get_price", broken)
    async with grpc_service() as (_, channel):
        error = await call(
            lambda: rpc_error(
                lambda: stub(channel).GetPrice(pb.GetPriceRequest(symbol="BTC"), timeout=30)
            )
        )
    assert error.code() is grpc.StatusCode.INTERNAL
    assert "secret" not in error.details()
