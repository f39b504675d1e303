"""Scenario shapes and overlays: pure maths, no trio."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mdactors.domain.overlay import MAX_LOG_DEVIATION, Scenario, SymbolOverlay
from mdactors.domain.scenarios import (
    Consolidation,
    CorrelationBreak,
    Crash,
    Disruption,
    Divergence,
    FeedMode,
    MeanReversion,
    Phase,
    PriceMove,
    ScenarioKind,
    Shape,
    SharedPath,
    Timeline,
    VolatilitySpike,
    smoothstep,
)

SIGMA = 0.5 / math.sqrt(365 * 86_400)  # BTC-like volatility per √second
DT = 0.05


def _scenario(shape: Shape | Disruption, timeline: Timeline, **extra: object) -> Scenario:
    return Scenario(
        f"s-{id(shape)}", ScenarioKind.PRICE_SHOCK, ("BTC/USD",), timeline, shape, **extra
    )


def _run(
    overlay: SymbolOverlay, base: np.ndarray, start: float = 0.0, dt: float = DT
) -> np.ndarray:
    """Published log prices for a base log-price path sampled every ``dt``."""
    return np.array([overlay.advance(start + (i + 1) * dt, x) for i, x in enumerate(base)])


def _walk(n: int, seed: int = 1, start: float = math.log(40_000.0)) -> np.ndarray:
    steps = np.random.default_rng(seed).standard_normal(n) * SIGMA * math.sqrt(DT)
    return start + np.cumsum(steps)


# --- timeline ---------------------------------------------------------------------------


def test_smoothstep_is_a_clamped_ramp_with_flat_ends() -> None:
    assert smoothstep(-1.0) == 0.0 and smoothstep(0.5) == 0.5 and smoothstep(2.0) == 1.0
    assert smoothstep(0.01) < 0.001


def test_sudden_onset_is_at_full_strength_at_once() -> None:
    timeline = Timeline(start=10.0, duration=5.0, recovery=2.0)
    assert timeline.level(9.999) == 0.0
    assert timeline.level(10.0) == 1.0
    assert timeline.phase(12.5) == (Phase.ACTIVE, 0.5)


def test_gradual_onset_rises_holds_and_recovers_to_zero() -> None:
    timeline = Timeline(start=0.0, duration=10.0, recovery=4.0, onset=4.0)
    levels = [timeline.level(t / 10) for t in range(0, 160)]
    rise = levels[:41]
    assert rise == sorted(rise) and levels[40] == 1.0
    assert all(level == 1.0 for level in levels[40:100])
    fall = levels[100:141]
    assert fall == sorted(fall, reverse=True) and levels[140] == 0.0
    assert timeline.phase(2.0) == (Phase.ONSET, 0.5)
    assert timeline.phase(12.0) == (Phase.RECOVERY, 0.5)
    assert timeline.phase(14.0)[0] is Phase.DONE
    assert timeline.end == 14.0


def test_stopping_recovers_from_the_level_reached_without_a_jump() -> None:
    timeline = Timeline(start=0.0, duration=100.0, recovery=2.0, onset=10.0)
    level_at_stop = timeline.level(5.0)
    stopped = timeline.stopped(5.0)
    assert stopped.recovery_start == 5.0 and stopped.end == 7.0
    assert stopped.level(5.0) == pytest.approx(level_at_stop)
    assert stopped.level(6.0) == pytest.approx(level_at_stop / 2)
    assert stopped.level(7.0) == 0.0
    assert stopped.stopped(6.0) is stopped  # already recovering


@pytest.mark.parametrize(
    "bad", [{"duration": -1.0}, {"recovery": math.nan}, {"onset": 20.0}, {"duration": math.inf}]
)
def test_timeline_rejects_bad_durations(bad: dict[str, float]) -> None:
    values = {"start": 0.0, "duration": 10.0, "recovery": 1.0, **bad}
    with pytest.raises(ValueError):
        Timeline(**values)


# --- shapes -----------------------------------------------------------------------------


def test_price_move_offsets_by_the_move_at_full_level() -> None:
    shape = PriceMove(-0.15, volume_boost=1.0)
    assert math.exp(shape.effect("BTC/USD", 1.0).offset) == pytest.approx(0.85)
    assert shape.effect("BTC/USD", 0.0).offset == 0.0
    assert shape.effect("BTC/USD", 1.0).volume == 2.0


def test_crash_falls_with_more_volatility_correlation_and_volume() -> None:
    shape = Crash(-0.3, volatility_multiplier=3.0, correlation=0.9, volume_multiplier=4.0)
    calm, full = shape.effect("ETH/USD", 0.0), shape.effect("ETH/USD", 1.0)
    assert calm.offset == 0.0 and calm.scale == 1.0 and calm.common == 0.0
    assert math.exp(full.offset) == pytest.approx(0.7)
    assert full.scale**2 + full.common**2 == pytest.approx(9.0)  # total vol 3x
    assert full.common**2 / 9.0 == pytest.approx(0.9)  # share of variance shared
    assert full.volume == 4.0


def test_volatility_spike_scales_returns() -> None:
    assert VolatilitySpike(5.0).effect("X", 0.5).scale == 3.0


def test_divergence_moves_only_the_target() -> None:
    shape = Divergence("BTC/USD", "ETH/USD", 100.0)
    assert shape.effect("BTC/USD", 1.0).offset == 0.0
    assert math.exp(shape.effect("ETH/USD", 1.0).offset) == pytest.approx(1.01)


def test_correlation_break_swaps_own_returns_for_independent_noise() -> None:
    full = CorrelationBreak().effect("X", 1.0)
    assert full.scale == 0.0 and full.noise == 1.0


def test_consolidation_damps_and_reverts_and_mean_reversion_reverts() -> None:
    tight = Consolidation(damping=0.2, half_life=10.0).effect("X", 1.0)
    assert tight.scale == pytest.approx(0.2)
    assert tight.reversion == pytest.approx(math.log(2) / 10.0)
    assert MeanReversion(5.0).effect("X", 0.5).reversion == pytest.approx(math.log(2) / 10.0)


def test_disruption_fades_latency_and_holds_stale_until_recovery() -> None:
    shape = Disruption(latency=1.0, jitter=0.2, loss=0.5, mode=FeedMode.STALE)
    held = shape.at(1.0, Phase.ACTIVE)
    assert held.mode is FeedMode.STALE and held.latency == 1.0
    fading = shape.at(0.5, Phase.RECOVERY)
    assert fading.mode is FeedMode.DEGRADED
    assert fading.latency == 0.5 and fading.loss == 0.25


def test_shared_path_gives_the_same_increments_to_every_reader() -> None:
    path = SharedPath(np.random.default_rng(3), 0.0)
    a0 = path.value(0.0)
    a1 = path.value(1.0)
    assert path.value(1.0) - a0 == a1 - a0
    assert path.value(0.5) == a1  # time never goes back


# --- overlays ---------------------------------------------------------------------------


def _overlay(base: float = math.log(40_000.0), seed: int = 7) -> SymbolOverlay:
    return SymbolOverlay("BTC/USD", base, SIGMA, np.random.default_rng(seed), 0.0)


def test_price_shock_falls_then_recovers_to_the_model_price() -> None:
    overlay = _overlay()
    overlay.add(_scenario(PriceMove(-0.15), Timeline(0.0, 2.0, 1.0)), 0.0)
    base = np.full(80, math.log(40_000.0))
    published = np.exp(_run(overlay, base))
    assert published[10] == pytest.approx(34_000.0)
    assert published[-1] == pytest.approx(40_000.0)
    assert overlay.empty and overlay.excess == 0.0


def test_recovery_has_no_jump_beyond_its_shape() -> None:
    overlay = _overlay()
    overlay.add(_scenario(PriceMove(-0.15), Timeline(0.0, 1.0, 2.0)), 0.0)
    published = _run(overlay, np.full(80, math.log(40_000.0)))
    steps = np.abs(np.diff(published[20:]))
    # smoothstep's steepest slope is 1.5/recovery: per 50 ms step ≈ 0.0375 × |log 0.85|.
    assert steps.max() <= 1.5 * DT / 2.0 * abs(math.log(0.85)) * 1.01


def test_volatility_spike_multiplies_realised_volatility() -> None:
    overlay = _overlay()
    overlay.add(_scenario(VolatilitySpike(4.0), Timeline(0.0, 1_000.0, 0.0)), 0.0)
    base = _walk(5_000)
    published = _run(overlay, base)
    ratio = np.std(np.diff(published)) / np.std(np.diff(base))
    assert ratio == pytest.approx(4.0, rel=1e-6)


def test_folding_the_excess_at_the_end_keeps_the_last_price() -> None:
    overlay = _overlay()
    overlay.add(_scenario(VolatilitySpike(4.0), Timeline(0.0, 10.0, 0.0)), 0.0)
    base = _walk(400)
    published = _run(overlay, base)
    assert overlay.empty
    # After the end the overlay adds its excess only: the caller folds it into the model.
    assert published[-1] == pytest.approx(base[-1] + overlay.excess)


def test_correlation_break_decorrelates_from_the_model() -> None:
    overlay = _overlay()
    overlay.add(_scenario(CorrelationBreak(), Timeline(0.0, 1_000.0, 0.0)), 0.0)
    base = _walk(4_000)
    published = _run(overlay, base)
    corr = np.corrcoef(np.diff(base), np.diff(published))[0, 1]
    assert abs(corr) < 0.1
    ratio = np.std(np.diff(published)) / np.std(np.diff(base))
    assert 0.8 < ratio < 1.2


def test_mean_reversion_pulls_back_to_the_start_price() -> None:
    overlay = _overlay()
    overlay.add(_scenario(MeanReversion(half_life=1.0), Timeline(0.0, 1_000.0, 0.0)), 0.0)
    start = math.log(40_000.0)
    base = np.full(200, start + 0.01)  # the model jumped 1 % away
    published = _run(overlay, base)
    assert abs(published[-1] - start) < 0.0001


def test_consolidation_keeps_the_price_in_a_tight_range() -> None:
    overlay = _overlay()
    overlay.add(_scenario(Consolidation(0.2, 5.0), Timeline(0.0, 1_000.0, 0.0)), 0.0)
    base = _walk(10_000)
    drift = (base - base[0]) * 50  # a strongly trending model
    published = _run(overlay, base[0] + drift)
    assert np.ptp(published[-2_000:]) < np.ptp((base[0] + drift)[-2_000:]) / 3


def test_crash_raises_correlation_between_symbols() -> None:
    shared = SharedPath(np.random.default_rng(5), 0.0)
    crash = Scenario(
        "c-1",
        ScenarioKind.MARKET_CRASH,
        ("BTC/USD", "ETH/USD"),
        Timeline(0.0, 1_000.0, 0.0),
        Crash(-0.2, 3.0, 0.9),
        shared=shared,
    )
    a, b = _overlay(seed=1), _overlay(seed=2)
    a.add(crash, 0.0)
    b.add(crash, 0.0)
    base_a, base_b = _walk(3_000, seed=11), _walk(3_000, seed=12)
    out_a, out_b = [], []
    for i in range(3_000):
        t = (i + 1) * DT
        out_a.append(a.advance(t, base_a[i]))
        out_b.append(b.advance(t, base_b[i]))
    corr = np.corrcoef(np.diff(out_a), np.diff(out_b))[0, 1]
    assert abs(np.corrcoef(np.diff(base_a), np.diff(base_b))[0, 1]) < 0.1
    assert corr > 0.8
    assert math.exp(out_a[-1] - base_a[-1]) < 0.9  # and it fell


def test_extreme_overlays_stay_finite_and_bounded() -> None:
    overlay = _overlay()
    crash = Scenario(
        "c",
        ScenarioKind.MARKET_CRASH,
        ("BTC/USD",),
        Timeline(0.0, 500.0, 1.0),
        Crash(-0.99, 20.0, 0.99, 100.0),
        shared=SharedPath(np.random.default_rng(1), 0.0),
    )
    overlay.add(crash, 0.0)
    overlay.add(_scenario(VolatilitySpike(20.0), Timeline(0.0, 500.0, 1.0)), 0.0)
    overlay.add(_scenario(PriceMove(-0.99), Timeline(0.0, 500.0, 1.0)), 0.0)
    base = _walk(5_000)
    published = _run(overlay, base, dt=0.1)
    assert np.isfinite(published).all()
    assert np.all(np.abs(published - base) <= MAX_LOG_DEVIATION + 1e-9)
