"""GenerateSimulation over gRPC (grpcio) and Connect (httpx) against the real service."""

from __future__ import annotations

import itertools
import time

import grpc
import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from mdactors._proto import marketdata_pb2 as pb
from mdactors._proto import marketdata_pb2_grpc as pb_grpc
from mdactors.app import Service
from tests.conftest import call, grpc_service, rpc_error

PATH = "/marketdata.MarketDataService"
MINUTE_NS = 60 * 10**9


def request(kind: int = pb.STATISTICAL_SIMILARITY, **parameters: object) -> pb.SimulationRequest:
    return pb.SimulationRequest(
        symbol="btc-usd",
        simulation_type=kind,
        parameters=pb.SimulationParameters(**parameters),  # type: ignore[arg-type]
    )


def assert_bars(points: list[pb.PricePoint]) -> None:
    for point in points:
        assert 0 < point.low <= min(point.open, point.close)
        assert point.high >= max(point.open, point.close)
        assert point.volume >= 0


async def test_default_request_is_24h_of_minutes_with_computed_metrics() -> None:
    async with grpc_service() as (_, channel):
        md = pb_grpc.MarketDataServiceStub(channel)
        response = await call(lambda: md.GenerateSimulation(request(), timeout=10))
    assert response.symbol == "btc-usd"
    assert len(response.historical_data) == len(response.simulated_data) == 1_440
    stamps = [point.timestamp.ToNanoseconds() for point in response.historical_data]
    assert all(b - a == MINUTE_NS for a, b in itertools.pairwise(stamps))
    assert abs(stamps[-1] + MINUTE_NS - time.time_ns()) < 120 * 10**9
    assert stamps == [point.timestamp.ToNanoseconds() for point in response.simulated_data]
    assert_bars(list(response.historical_data))
    assert_bars(list(response.simulated_data))
    # The in-memory history (the start-up backfill) is the historical side.
    assert response.simulated_data[0].open == response.historical_data[0].open
    metrics = response.similarity_metrics
    assert -1.0 <= metrics.correlation_coefficient <= 1.0
    assert 0.0 < metrics.volatility_similarity <= 1.0
    assert 0.0 < metrics.confidence_score <= 1.0
    prefix, symbol, seconds, suffix = response.simulation_id.split("_")
    assert (prefix, symbol) == ("sim", "BTC-USD")
    assert abs(int(seconds) - time.time()) < 60 and len(suffix) == 8


async def test_every_kind_differs_and_ids_are_unique() -> None:
    async with grpc_service() as (_, channel):
        md = pb_grpc.MarketDataServiceStub(channel)
        responses = await call(
            lambda: [
                md.GenerateSimulation(request(kind, data_points=500), timeout=10)
                for kind in range(5)
            ]
        )
    closes = {tuple(p.close for p in r.simulated_data) for r in responses}
    assert len(closes) == 5
    assert len({r.simulation_id for r in responses}) == 5
    assert len({r.similarity_metrics.confidence_score for r in responses}) == 5


@pytest.mark.parametrize(
    ("parameters", "words"),
    [
        ({"data_points": -1}, "data_points"),
        ({"data_points": 100_001}, "at most 100000"),
        ({"volatility_factor": -2.0}, "volatility_factor"),
        ({"volatility_factor": float("nan")}, "volatility_factor"),
        ({"trend_factor": -1.5}, "trend_factor"),
        ({"include_noise": True, "noise_level": 3.0}, "noise_level"),
    ],
)
async def test_bad_parameters_are_invalid_argument(
    parameters: dict[str, object], words: str
) -> None:
    async with grpc_service() as (_, channel):
        md = pb_grpc.MarketDataServiceStub(channel)
        error = await call(
            lambda: rpc_error(lambda: md.GenerateSimulation(request(**parameters), timeout=10))
        )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert words in error.details()


async def test_bad_symbol_type_and_span_are_invalid_argument() -> None:
    start, end = Timestamp(seconds=1_700_000_000), Timestamp(seconds=1_600_000_000)
    bad = [
        pb.SimulationRequest(symbol="!!"),
        pb.SimulationRequest(symbol="BTC", simulation_type=9),  # type: ignore[arg-type]
        pb.SimulationRequest(symbol="BTC", start_time=start, end_time=end),
        pb.SimulationRequest(symbol="BTC", start_time=Timestamp(seconds=5)),
    ]
    async with grpc_service() as (_, channel):
        md = pb_grpc.MarketDataServiceStub(channel)
        errors = await call(
            lambda: [rpc_error(lambda r=r: md.GenerateSimulation(r, timeout=10)) for r in bad]
        )
    assert [error.code() for error in errors] == [grpc.StatusCode.INVALID_ARGUMENT] * 4
    assert "symbol" in errors[0].details() and "simulation_type" in errors[1].details()
    assert "after start_time" in errors[2].details() and "1978" in errors[3].details()


async def test_range_without_history_uses_the_model_and_is_deterministic() -> None:
    start = Timestamp(seconds=1_600_000_000)
    end = Timestamp(seconds=1_600_000_000 + 3_600)
    one = pb.SimulationRequest(
        symbol="SOL", start_time=start, end_time=end, simulation_type=pb.MEAN_REVERSION
    )
    async with grpc_service() as (_, channel):
        md = pb_grpc.MarketDataServiceStub(channel)
        first, second = await call(
            lambda: [md.GenerateSimulation(one, timeout=10) for _ in range(2)]
        )
    assert len(first.historical_data) == 60
    assert first.historical_data[0].timestamp.seconds == 1_600_000_000
    assert_bars(list(first.historical_data))
    assert first.historical_data == second.historical_data
    assert first.simulated_data == second.simulated_data
    assert first.simulation_id != second.simulation_id


async def test_range_in_the_deep_backfill_is_the_served_history() -> None:
    # Two days back is past the history store's day: only the start-up backfill has it.
    now = time.time_ns()
    start_ns = (now - 2 * 86_400 * 10**9) // MINUTE_NS * MINUTE_NS
    ask = pb.SimulationRequest(
        symbol="BTC-USD",
        start_time=Timestamp(seconds=start_ns // 10**9),
        end_time=Timestamp(seconds=start_ns // 10**9 + 3_600),
        simulation_type=pb.BROWNIAN_MOTION,
    )
    async with grpc_service({"BACKFILL_DAYS": "3"}) as (service, channel):
        md = pb_grpc.MarketDataServiceStub(channel)
        response = await call(lambda: md.GenerateSimulation(ask, timeout=10))
        served = await service.context.view.candles(
            "BTC/USD", "1m", start_ns // 10**6, start_ns // 10**6 + 3_600_000 - 1, 60
        )
    assert len(served) == 60
    assert [point.close for point in response.historical_data] == [c.close for c in served]
    assert [point.open for point in response.historical_data] == [c.open for c in served]


async def test_large_request_does_not_stall_the_feed() -> None:
    async with grpc_service() as (service, _):
        options = [("grpc.max_receive_message_length", 16 * 1024 * 1024)]
        big = grpc.insecure_channel(f"127.0.0.1:{service.ports['grpc']}", options=options)
        seq = service.context.market.latest("BTC/USD").seq
        started = time.perf_counter()
        response = await call(
            lambda: pb_grpc.MarketDataServiceStub(big).GenerateSimulation(
                request(pb.MONTE_CARLO, data_points=100_000), timeout=20
            )
        )
        took = time.perf_counter() - started
        big.close()
        # Ticks (every 50 ms) kept flowing while it was computed.
        assert service.context.market.latest("BTC/USD").seq - seq >= int(took / 0.05) // 2
    assert len(response.simulated_data) == 100_000
    assert_bars(list(response.simulated_data[:1000]))


async def test_connect_json_and_binary(service: Service) -> None:
    base = f"http://127.0.0.1:{service.ports['http']}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        body = {
            "symbol": "ETH",
            "simulationType": "BROWNIAN_MOTION",
            "parameters": {"dataPoints": 50},
        }
        as_json = await client.post(f"{PATH}/GenerateSimulation", json=body)
        as_proto = await client.post(
            f"{PATH}/GenerateSimulation",
            content=request(pb.TREND_FOLLOWING, data_points=40).SerializeToString(),
            headers={"Content-Type": "application/proto"},
        )
        bad = await client.post(
            f"{PATH}/GenerateSimulation", json={"symbol": "ETH", "parameters": {"dataPoints": -3}}
        )
    assert as_json.status_code == 200, as_json.text
    payload = as_json.json()
    assert payload["symbol"] == "ETH" and len(payload["simulatedData"]) == 50
    assert payload["simulationId"].startswith("sim_ETH-USD_")
    assert set(payload["similarityMetrics"]) >= {"correlationCoefficient", "confidenceScore"}
    decoded = pb.SimulationResponse.FromString(as_proto.content)
    assert len(decoded.historical_data) == 40
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_argument"
