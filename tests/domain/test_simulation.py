"""GenerateSimulation's pure parts: bars, the five simulations, metrics, the PricePoint codec."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from mdactors._proto import marketdata_pb2 as pb
from mdactors.api.rpc.simulation_codec import price_points
from mdactors.domain.bars import Bars, grid_bars
from mdactors.domain.candles import Candle
from mdactors.domain.model_config import default_model
from mdactors.domain.reference import complete_history, model_bars
from mdactors.domain.similarity import similarity
from mdactors.domain.simulation import (
    SimulationError,
    SimulationKind,
    SimulationParams,
    ar1,
    simulate,
)
from mdactors.domain.symbols import spec_for
from tests.conftest import ROOT

START_NS = 1_700_000_000 * 10**9
MINUTE_NS = 60 * 10**9
BTC = spec_for("BTC/USD")


def reference(count: int = 2_000, seed: int = 1) -> Bars:
    return model_bars(
        default_model(BTC), BTC, 40_000.0, START_NS, MINUTE_NS, count, np.random.default_rng(seed)
    )


def run(kind: SimulationKind, ref: Bars, seed: int = 7, **params: object) -> Bars:
    return simulate(
        kind,
        ref,
        SimulationParams(**params),  # type: ignore[arg-type]
        np.random.default_rng(seed),
        fallback_sigma=1e-3,
    )


def assert_valid(bars: Bars, count: int) -> None:
    assert len(bars) == count
    for column in (bars.open, bars.high, bars.low, bars.close, bars.volume):
        assert np.all(np.isfinite(column))
    assert np.all(bars.low > 0)
    assert np.all(bars.low <= np.minimum(bars.open, bars.close))
    assert np.all(bars.high >= np.maximum(bars.open, bars.close))


def log_returns(bars: Bars) -> np.ndarray:
    return np.diff(np.log(bars.prices()))


# -- the five kinds ------------------------------------------------------------


@pytest.mark.parametrize("kind", list(SimulationKind))
def test_every_kind_gives_valid_bars_from_the_reference_start(kind: SimulationKind) -> None:
    ref = reference()
    bars = run(kind, ref)
    assert_valid(bars, len(ref))
    assert bars.open[0] == pytest.approx(ref.open[0])
    assert bars.start_ns == ref.start_ns and bars.step_ns == ref.step_ns


@pytest.mark.parametrize("kind", list(SimulationKind))
def test_every_kind_is_deterministic_per_seed(kind: SimulationKind) -> None:
    ref = reference(500)
    assert np.array_equal(run(kind, ref, 3).close, run(kind, ref, 3).close)
    assert not np.array_equal(run(kind, ref, 3).close, run(kind, ref, 4).close)


def test_statistical_similarity_reproduces_the_return_distribution() -> None:
    ref = reference(5_000)
    boot = similarity(ref.prices(), run(SimulationKind.STATISTICAL_SIMILARITY, ref).prices())
    brownian = similarity(ref.prices(), run(SimulationKind.BROWNIAN_MOTION, ref).prices())
    # Resampled returns: nearly the same distribution (the default model has fat tails).
    assert boot.return_distribution_similarity > 0.97
    assert boot.return_distribution_similarity > brownian.return_distribution_similarity


def test_mean_reversion_wanders_less_than_brownian_motion() -> None:
    ref = reference(5_000)
    spreads = {
        kind: np.mean([np.std(np.log(run(kind, ref, seed).close)) for seed in range(10)])
        for kind in (SimulationKind.MEAN_REVERSION, SimulationKind.BROWNIAN_MOTION)
    }
    assert spreads[SimulationKind.MEAN_REVERSION] < 0.5 * spreads[SimulationKind.BROWNIAN_MOTION]


def test_trend_following_has_momentum_and_brownian_motion_none() -> None:
    ref = reference(20_000)

    def lag1(bars: Bars) -> float:
        r = log_returns(bars)
        return float(np.corrcoef(r[:-1], r[1:])[0, 1])

    assert lag1(run(SimulationKind.TREND_FOLLOWING, ref)) > 0.4
    assert abs(lag1(run(SimulationKind.BROWNIAN_MOTION, ref))) < 0.05


def test_monte_carlo_is_a_fan_around_the_median() -> None:
    ref = reference(1_000)
    fan = run(SimulationKind.MONTE_CARLO, ref)
    path = run(SimulationKind.BROWNIAN_MOTION, ref)
    # The 10th..90th band widens with time, unlike one path's bar range.
    early, late = (
        np.mean((fan.high - fan.low)[s] / fan.close[s]) for s in (slice(0, 50), slice(-50, None))
    )
    assert late > 3 * early
    assert np.mean((path.high - path.low)[-50:]) < np.mean((fan.high - fan.low)[-50:])


@pytest.mark.parametrize("kind", list(SimulationKind))
def test_trend_factor_moves_the_end(kind: SimulationKind) -> None:
    ref = reference(2_000)
    ends = {
        trend: np.mean(
            [math.log(run(kind, ref, seed, trend_factor=trend).close[-1]) for seed in range(8)]
        )
        for trend in (-0.3, 0.0, 0.5)
    }
    assert ends[-0.3] < ends[0.0] < ends[0.5]


@pytest.mark.parametrize("kind", list(SimulationKind))
def test_volatility_factor_scales_the_returns(kind: SimulationKind) -> None:
    ref = reference(3_000)
    calm = np.std(log_returns(run(kind, ref, volatility_factor=0.5)))
    wild = np.std(log_returns(run(kind, ref, volatility_factor=2.0)))
    assert wild > 2.5 * calm


@pytest.mark.parametrize("level", [0.01, 0.5, 1.0])
def test_noise_level_is_a_fraction_of_the_reference_bar_volatility(level: float) -> None:
    ref = reference(3_000)
    sigma = np.std(log_returns(ref))
    clean = run(SimulationKind.BROWNIAN_MOTION, ref)
    noisy = run(SimulationKind.BROWNIAN_MOTION, ref, include_noise=True, noise_level=level)
    ignored = run(SimulationKind.BROWNIAN_MOTION, ref, include_noise=False, noise_level=level)
    # Same seed: the path is drawn first, so the difference is the noise alone.
    added = np.log(noisy.close) - np.log(clean.close)
    assert np.std(added) == pytest.approx(level * sigma, rel=0.05)
    assert np.array_equal(ignored.close, clean.close)
    assert_valid(noisy, len(ref))


def _reference_request_scores(kind: SimulationKind, seed: int) -> tuple[float, float]:
    """The ecosystem's reference request: BTC-USD, the last 24 h in 100 points, noise 0.01."""
    points, step_ns = 100, 86_400 * 10**9 // 100
    model, rng = default_model(BTC), np.random.default_rng(seed)
    gap = np.full(points, np.nan)
    recorded = Bars(START_NS, step_ns, gap, gap, gap, gap, np.zeros(points))
    historical, _ = complete_history(recorded, model, BTC, BTC.seed_price, rng)
    params = SimulationParams(volatility_factor=1.0, include_noise=True, noise_level=0.01)
    fallback = model.volatility * math.sqrt(step_ns / 1e9 / (365.0 * 86_400.0))
    simulated = simulate(kind, historical, params, rng, fallback_sigma=fallback)
    metrics = similarity(historical.prices(), simulated.prices())
    return metrics.volatility_similarity, metrics.return_distribution_similarity


@pytest.mark.parametrize(
    "kind",
    [
        SimulationKind.STATISTICAL_SIMILARITY,
        SimulationKind.MONTE_CARLO,
        SimulationKind.BROWNIAN_MOTION,
    ],
)
def test_reference_request_resembles_its_history(kind: SimulationKind) -> None:
    scores = np.array([_reference_request_scores(kind, seed) for seed in range(20)])
    volatility, distribution = np.median(scores, axis=0)
    assert volatility >= 0.8
    assert distribution >= 0.7


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"volatility_factor": 0.0}, "volatility_factor"),
        ({"volatility_factor": 11.0}, "volatility_factor"),
        ({"trend_factor": -1.0}, "trend_factor"),
        ({"trend_factor": float("inf")}, "trend_factor"),
        ({"noise_level": -0.1}, "noise_level"),
        ({"noise_level": float("nan")}, "noise_level"),
    ],
)
def test_parameters_out_of_range_name_the_parameter(params: dict[str, float], name: str) -> None:
    with pytest.raises(SimulationError, match=name):
        SimulationParams(**params)  # type: ignore[arg-type]


def test_flat_reference_uses_the_fallback_volatility() -> None:
    flat = np.full(100, 5.0)
    ref = Bars(START_NS, MINUTE_NS, flat, flat, flat, flat, np.ones(100))
    bars = run(SimulationKind.BROWNIAN_MOTION, ref)
    assert np.std(log_returns(bars)) == pytest.approx(1e-3, rel=0.3)


@pytest.mark.parametrize("coefficient", [0.6, 0.999, 0.01])
def test_ar1_matches_the_recursion(coefficient: float) -> None:
    shocks = np.random.default_rng(1).standard_normal(3_000)
    expected, value = [], 0.0
    for shock in shocks.tolist():
        value = coefficient * value + shock
        expected.append(value)
    assert np.allclose(ar1(shocks, coefficient), expected, atol=1e-9)


# -- metrics ------------------------------------------------------------------


def test_identical_series_are_perfectly_similar_and_metrics_follow_the_inputs() -> None:
    ref = reference(3_000)
    same = similarity(ref.prices(), ref.prices())
    assert same.correlation_coefficient == pytest.approx(1.0)
    assert same.volatility_similarity == same.return_distribution_similarity == 1.0
    assert same.confidence_score == pytest.approx(1.0)
    close = similarity(ref.prices(), run(SimulationKind.STATISTICAL_SIMILARITY, ref).prices())
    wild = similarity(
        ref.prices(),
        run(SimulationKind.STATISTICAL_SIMILARITY, ref, volatility_factor=4.0).prices(),
    )
    # A resample of a series with a daily rhythm and long-memory volatility mixes
    # busy and quiet stretches in new proportions: its σ is within ~15 %, not ~10 %.
    assert wild.volatility_similarity < 0.35 < 0.85 < close.volatility_similarity
    assert wild.return_distribution_similarity < close.return_distribution_similarity
    assert wild.confidence_score < close.confidence_score < same.confidence_score


# -- bars and history ---------------------------------------------------------


def candle(minute: int, o: float, h: float, low: float, c: float, v: float = 1.0) -> Candle:
    return Candle("BTC/USD", "1m", START_NS // 10**6 + minute * 60_000, o, h, low, c, v, 1, True)


def test_grid_bars_fold_candles_fill_gaps_and_leave_the_lead_empty() -> None:
    candles = [
        candle(2, 10, 12, 9, 11),
        candle(3, 11, 15, 10, 14, 2.0),
        candle(6, 13, 13, 8, 9),
        candle(99, 1, 1, 1, 1),  # outside the grid
    ]
    bars = grid_bars(candles, START_NS, 2 * MINUTE_NS, 5)
    assert np.isnan(bars.close[0])
    assert (bars.open[1], bars.high[1], bars.low[1], bars.close[1]) == (10, 15, 9, 14)
    assert bars.volume[1] == 3.0
    assert (bars.open[2], bars.high[2], bars.low[2], bars.close[2], bars.volume[2]) == (
        14,
        14,
        14,
        14,
        0.0,
    )
    assert (bars.open[3], bars.close[3]) == (13, 9)
    assert bars.close[4] == 9 and bars.volume[4] == 0.0
    empty = grid_bars([], START_NS, MINUTE_NS, 3)
    assert np.all(np.isnan(empty.close))


def test_complete_history_fills_the_lead_from_the_model_without_a_seam() -> None:
    recorded = grid_bars([candle(10, 100, 101, 99, 100.5)], START_NS, MINUTE_NS, 12)
    bars, used = complete_history(
        recorded, default_model(BTC), BTC, 123.0, np.random.default_rng(1)
    )
    assert used
    assert_valid(bars, 12)
    assert bars.close[9] == pytest.approx(100.0)
    assert bars.close[10] == 100.5 and bars.close[11] == 100.5
    nothing, used = complete_history(
        grid_bars([], START_NS, MINUTE_NS, 5),
        default_model(BTC),
        BTC,
        123.0,
        np.random.default_rng(1),
    )
    assert not used and nothing.close[-1] == pytest.approx(123.0)


# -- the PricePoint codec -------------------------------------------------------


def test_price_points_bytes_parse_to_the_same_messages_protobuf_builds() -> None:
    ref = reference(50)
    ref = Bars(
        START_NS + 123_456_789,
        MINUTE_NS + 1,
        ref.open,
        ref.high,
        ref.low,
        ref.close,
        np.where(np.arange(50) % 2, ref.volume, 0.0),
    )
    parsed = pb.SimulationResponse.FromString(price_points(3, ref))
    expected = pb.SimulationResponse()
    for index, stamp in enumerate(ref.timestamps_ns.tolist()):
        point = expected.simulated_data.add(
            open=ref.open[index],
            high=ref.high[index],
            low=ref.low[index],
            close=ref.close[index],
            volume=ref.volume[index],
        )
        point.timestamp.FromNanoseconds(stamp)
    assert parsed == expected


def test_price_points_refuse_timestamps_outside_five_byte_seconds() -> None:
    one = np.ones(1)
    with pytest.raises(ValueError, match="1978"):
        price_points(2, Bars(0, 1, one, one, one, one, one))


# -- the bench ------------------------------------------------------------------


def test_simulation_bench_runs() -> None:
    bench = ROOT / "bench" / "simulation.py"
    result = subprocess.run(
        [sys.executable, str(bench), "--points", "20000", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "MONTE_CARLO" in result.stdout and "ms" in result.stdout
