"""StreamScenario: the six shapes (pure), and the stream over gRPC (grpcio) and Connect (httpx)."""

from __future__ import annotations

import json
import time

import grpc
import httpx
import numpy as np
import pytest
import trio
from google.protobuf.timestamp_pb2 import Timestamp

from mdactors._proto import marketdata_pb2 as pb
from mdactors._proto import marketdata_pb2_grpc as pb_grpc
from mdactors.api.connect.protocol import envelope
from mdactors.app import Service
from mdactors.domain.funding import funding_offset_bps
from mdactors.domain.model_config import default_model
from mdactors.domain.scenario_feed import ScenarioFeed, ScenarioPlan, ScenarioType
from mdactors.domain.symbols import spec_for
from tests.conftest import call, grpc_service, rpc_error

BTC = spec_for("BTC/USD")
START = 43_000.0


def prices(
    kind: ScenarioType,
    intensity: float = 1.0,
    seed: int = 1,
    window: float = 600.0,
    recovery: float = 0.0,
    gradual: bool = False,
) -> np.ndarray:
    plan = ScenarioPlan(kind, intensity, window, 1.0, recovery, gradual)
    feed = ScenarioFeed(plan, BTC, default_model(BTC), START, np.random.default_rng(seed))
    return np.array([step.price for step in feed])


def realised_vol(path: np.ndarray) -> float:
    return float(np.std(np.diff(np.log(path))))


# -- shapes ---------------------------------------------------------------------


def test_rally_ends_above_and_crash_below_the_start_at_every_intensity() -> None:
    for intensity in (0.1, 1.0, 2.0):
        for seed in range(3):
            assert prices(ScenarioType.RALLY, intensity, seed)[-1] > START
            assert prices(ScenarioType.CRASH, intensity, seed)[-1] < START


def test_default_intensity_has_a_clear_magnitude() -> None:
    baseline = realised_vol(prices(ScenarioType.VOLATILITY_SPIKE, 0.1))
    assert prices(ScenarioType.RALLY)[-1] / START == pytest.approx(1.10, abs=0.01)
    assert prices(ScenarioType.CRASH)[-1] / START == pytest.approx(0.80, abs=0.02)
    assert prices(ScenarioType.DIVERGENCE)[-1] / START == pytest.approx(1.05, abs=0.01)
    assert realised_vol(prices(ScenarioType.VOLATILITY_SPIKE)) > 3 * baseline
    assert realised_vol(prices(ScenarioType.CONSOLIDATION)) < 0.5 * baseline


def test_the_shapes_are_distinct() -> None:
    paths = {kind: prices(kind) for kind in ScenarioType}
    signature = {
        kind: (round(path[-1] / START, 2), round(realised_vol(path) * 1e5))
        for kind, path in paths.items()
    }
    assert len(set(signature.values())) == len(ScenarioType)


def test_mean_reverting_stays_near_its_start() -> None:
    reverting = prices(ScenarioType.MEAN_REVERTING, 2.0, window=3_600.0)
    spike = prices(ScenarioType.VOLATILITY_SPIKE, 0.25, window=3_600.0)  # the same 2× vol
    assert np.max(np.abs(np.log(reverting / START))) < np.max(np.abs(np.log(spike / START)))


def test_gradual_transition_ramps_and_sudden_jumps() -> None:
    sudden = prices(ScenarioType.RALLY)
    gradual = prices(ScenarioType.RALLY, gradual=True)
    assert sudden[0] / START > 1.09
    assert gradual[0] / START < 1.01
    assert gradual[120] / START < sudden[120] / START and gradual[-1] / START > 1.09


def test_recovery_factor_gives_back_that_share_of_the_move() -> None:
    held = prices(ScenarioType.CRASH, recovery=0.0)
    half = prices(ScenarioType.CRASH, recovery=0.5)
    full = prices(ScenarioType.CRASH, recovery=1.0)
    assert held[-1] / START < 0.82
    assert half[-1] / START == pytest.approx(0.9, abs=0.02)
    assert full[-1] / START == pytest.approx(1.0, abs=0.02)
    assert full[300] / START < 0.85  # it still crashed first


@pytest.mark.parametrize("kind", list(ScenarioType))
def test_no_nan_negative_or_crossed_quote_at_full_intensity(kind: ScenarioType) -> None:
    plan = ScenarioPlan(kind, 2.0, 3_600.0, 1.0)
    usdt = spec_for("USDT/USD")
    for spec, price in ((BTC, START), (usdt, 1.0)):
        feed = ScenarioFeed(plan, spec, default_model(spec), price, np.random.default_rng(3))
        for step in feed:
            assert np.isfinite(step.price) and step.price > 0 and step.volume >= 0
            assert 0 < step.bid < step.ask
            assert step.low <= step.price <= step.high


def test_perpetual_kinds_lift_blow_out_and_crash_the_perpetual() -> None:
    perp = spec_for("BTC/USD-PERP")

    def steps(kind: ScenarioType, seed: int) -> list:
        plan = ScenarioPlan(kind, 1.0, 600.0, 1.0)
        return list(
            ScenarioFeed(plan, perp, default_model(BTC), START, np.random.default_rng(seed))
        )

    def baseline_ratio(kind: ScenarioType) -> float:
        # The same seeded path with and without the scenario: their ratio is its offset.
        scenario_steps = steps(kind, 5)
        calm = ScenarioFeed(
            ScenarioPlan(None, 1.0, 600.0, 1.0), perp, default_model(BTC), START,
            np.random.default_rng(5),
        )  # fmt: skip
        return scenario_steps[300].price / list(calm)[300].price

    lift = funding_offset_bps(0.003, perp) / 10_000.0
    assert baseline_ratio(ScenarioType.FUNDING_SPIKE) == pytest.approx(1.0 + lift, abs=5e-4)
    assert baseline_ratio(ScenarioType.BASIS_BLOWOUT) == pytest.approx(1.02, abs=5e-4)
    cascade = steps(ScenarioType.LIQUIDATION_CASCADE, 5)
    assert cascade[300].price / START == pytest.approx(0.9, abs=0.03)
    calm_spread = np.median([(s.ask - s.bid) / s.price for s in steps(ScenarioType.RALLY, 5)])
    wide = np.median([(s.ask - s.bid) / s.price for s in cascade[10:590]])
    assert wide > 3.0 * calm_spread


# -- over gRPC -------------------------------------------------------------------


def scenario(kind: int = pb.RALLY, **fields: object) -> pb.ScenarioRequest:
    return pb.ScenarioRequest(symbol="btc-usd", scenario_type=kind, **fields)  # type: ignore[arg-type]


async def test_stream_plays_a_ten_minute_rally_in_simulated_time_fast() -> None:
    start = Timestamp(seconds=1_700_000_000)
    request = scenario(start_time=start, duration_minutes=10, playback_speed=3_000.0)
    async with grpc_service() as (service, channel):
        md = pb_grpc.MarketDataServiceStub(channel)
        live = service.context.market.latest("BTC/USD").price
        began = time.perf_counter()
        updates = await call(lambda: list(md.StreamScenario(request, timeout=10)))
        took = time.perf_counter() - began
    assert len(updates) == 600 and 0.15 < took < 5.0
    assert {u.source for u in updates} == {"scenario-simulator"}
    assert {u.symbol for u in updates} == {"btc-usd"} and updates[0].key == "BTC/USD"
    stamps = [u.timestamp.ToNanoseconds() for u in updates]
    assert stamps[0] == (1_700_000_000 + 1) * 10**9 and stamps[-1] == (1_700_000_000 + 600) * 10**9
    assert [u.sequence for u in updates] == list(range(1, 601))
    assert updates[-1].price > live * 1.05
    assert all(u.bid < u.ask and u.change_info.daily_high >= u.price for u in updates)


async def test_a_perpetual_streams_its_liquidation_cascade() -> None:
    request = pb.ScenarioRequest(
        symbol="BTC-USD-PERP", scenario_type=pb.LIQUIDATION_CASCADE, duration_minutes=10,
        playback_speed=3_000.0,
    )  # fmt: skip
    async with grpc_service() as (service, channel):
        md = pb_grpc.MarketDataServiceStub(channel)
        live = service.context.market.latest("BTC/USD-PERP").price
        updates = await call(lambda: list(md.StreamScenario(request, timeout=10)))
    assert len(updates) == 600 and updates[0].key == "BTC/USD-PERP"
    assert updates[300].price < live * 0.95  # sudden: 10 % down from the first update


async def test_stream_is_real_time_by_default() -> None:
    async with grpc_service() as (_, channel):
        md = pb_grpc.MarketDataServiceStub(channel)
        stream = md.StreamScenario(scenario(pb.CRASH), timeout=10)
        began = time.perf_counter()
        first = await call(lambda: next(stream))
        took = time.perf_counter() - began
        stream.cancel()
    assert 0.8 < took < 3.0  # the first update is one simulated (= real) second in
    assert abs(first.timestamp.ToNanoseconds() - time.time_ns()) < 5 * 10**9


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"parameters": pb.ScenarioParameters(intensity=3.0)}, "intensity"),
        ({"parameters": pb.ScenarioParameters(intensity=-1.0)}, "intensity"),
        ({"parameters": pb.ScenarioParameters(recovery_factor=2.0)}, "recovery_factor"),
        ({"parameters": pb.ScenarioParameters(duration_factor=50.0)}, "duration_factor"),
        ({"duration_minutes": -5}, "duration_minutes"),
        ({"playback_speed": -1.0}, "playback_speed"),
        ({"scenario_type": 17}, "scenario_type"),
        ({"symbol": "!!"}, "symbol"),
        ({"scenario_type": pb.FUNDING_SPIKE}, "not one"),
    ],
)
async def test_bad_requests_are_invalid_argument(fields: dict[str, object], words: str) -> None:
    request = scenario()
    for name, value in fields.items():
        if isinstance(value, pb.ScenarioParameters):
            request.parameters.CopyFrom(value)
        else:
            setattr(request, name, value)
    async with grpc_service() as (_, channel):
        md = pb_grpc.MarketDataServiceStub(channel)
        error = await call(lambda: rpc_error(lambda: list(md.StreamScenario(request, timeout=5))))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert words in error.details()


async def test_drain_ends_a_scenario_stream_with_unavailable() -> None:
    async with grpc_service() as (service, channel):
        md = pb_grpc.MarketDataServiceStub(channel)
        stream = md.StreamScenario(scenario(duration_minutes=60), timeout=20)
        await call(lambda: next(stream))
        service.context.lifecycle.begin_drain()
        with trio.fail_after(10):
            error = await call(lambda: rpc_error(lambda: list(stream)))
    assert error.code() is grpc.StatusCode.UNAVAILABLE


# -- over Connect ------------------------------------------------------------------


async def test_connect_streams_a_scenario_then_ends(service: Service) -> None:
    base = f"http://127.0.0.1:{service.ports['http']}"
    body = {
        "symbol": "SOL",
        "scenarioType": "VOLATILITY_SPIKE",
        "durationMinutes": 1,
        "playbackSpeed": 600,
    }
    frames: list[tuple[int, bytes]] = []
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        async with client.stream(
            "POST",
            "/marketdata.MarketDataService/StreamScenario",
            content=envelope(json.dumps(body).encode()),
            headers={"Content-Type": "application/connect+json"},
        ) as response:
            buffer = await response.aread()
        bad = await client.post(
            "/marketdata.MarketDataService/StreamScenario",
            content=envelope(json.dumps({"symbol": "SOL", "scenarioType": 9}).encode()),
            headers={"Content-Type": "application/connect+json"},
        )
    while buffer:
        size = int.from_bytes(buffer[1:5], "big")
        frames.append((buffer[0], buffer[5 : 5 + size]))
        buffer = buffer[5 + size :]
    updates = [json.loads(data) for flags, data in frames if not flags & 0x02]
    assert len(updates) == 60
    assert updates[0]["source"] == "scenario-simulator" and updates[0]["symbol"] == "SOL"
    assert frames[-1] == (0x02, b"{}")
    assert b"scenario_type" in bad.content
