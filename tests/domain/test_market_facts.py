"""The second level of realism: volume with volatility, long memory, a day's rhythm, skew.

Measured on 60 days of one-minute bars per seed from the start-up history
generator (the model, its rhythm and its volume), as ``bench/stylized_facts.py``
does; plain GBM (or volume drawn independently of returns) fails each fact.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from mdactors.domain.backfill import minute_history
from mdactors.domain.bars import Bars
from mdactors.domain.innovations import MarketFactor
from mdactors.domain.model_config import default_model
from mdactors.domain.models import GBM, SECONDS_PER_YEAR, PriceModel
from mdactors.domain.rhythm import FLAT, HOURS_PER_WEEK, Rhythm, hour_of_week
from mdactors.domain.stylized import (
    aggregate,
    hourly_ratio,
    kurtosis_by_aggregation,
    log_returns,
    memory_decay,
    skewness,
    volume_volatility_correlation,
)
from mdactors.domain.symbols import spec_for
from mdactors.engine.symbol_actor import SymbolActor

MINUTES = 86_400  # 60 days
MONDAY_MS = 1_767_571_200_000  # 2026-01-05 00:00 UTC
SPEC = spec_for("BTC/USD")
BTC = default_model(SPEC)
SEEDS = range(5)


def _history(model: PriceModel, seed: int) -> Bars:
    end_ms = MONDAY_MS + MINUTES * 60_000
    rng = np.random.default_rng(seed)
    return minute_history(SPEC, model, 1.0, end_ms, MINUTES, rng, 1, MarketFactor(seed))


def _returns(bars: Bars) -> np.ndarray:
    return log_returns(np.concatenate(([bars.open[0]], bars.close)))


@pytest.fixture(scope="module")
def btc() -> list[Bars]:
    return [_history(BTC, seed) for seed in SEEDS]


@pytest.fixture(scope="module")
def gbm() -> list[Bars]:
    return [_history(GBM(0.5), seed) for seed in SEEDS]


def _median(values: list[float]) -> float:
    return float(np.median(values))


def test_volume_moves_with_absolute_returns(btc: list[Bars]) -> None:
    corr = [volume_volatility_correlation(bars.volume, _returns(bars)) for bars in btc]
    assert 0.3 <= _median(corr) <= 0.6, corr
    # Volume drawn on its own, as before, carries no information about the move.
    rng = np.random.default_rng(1)
    independent = [
        volume_volatility_correlation(np.exp(0.5 * rng.standard_normal(MINUTES)), _returns(bars))
        for bars in btc
    ]
    assert max(abs(c) for c in independent) < 0.05


def test_volume_keeps_the_symbol_daily_volume(btc: list[Bars]) -> None:
    ratios = [float(np.mean(bars.volume)) * 1_440 / SPEC.daily_volume for bars in btc]
    assert 0.8 < _median(ratios) < 1.2, ratios


def test_absolute_returns_have_long_memory(btc: list[Bars], gbm: list[Bars]) -> None:
    first = [float(np.corrcoef(a[1:], a[:-1])[0, 1]) for a in (np.abs(_returns(b)) for b in btc)]
    assert 0.15 <= _median(first) <= 0.35, first
    decays = [memory_decay(_returns(bars)) for bars in btc]
    ratios, slopes = [d[0] for d in decays], [d[1] for d in decays]
    assert _median(ratios) >= 0.15, ratios
    assert -0.5 <= _median(slopes) <= -0.1, slopes
    plain = [memory_decay(_returns(bars)) for bars in gbm]
    assert all(math.isnan(slope) for _, slope in plain), "GBM's |r| has no memory to decay"


def test_kurtosis_still_falls_with_aggregation(btc: list[Bars]) -> None:
    sizes = (1, 15, 240, 1_440)
    runs = [kurtosis_by_aggregation(_returns(bars), sizes) for bars in btc]
    medians = [_median([run[size] for run in runs]) for size in sizes]
    assert medians == sorted(medians, reverse=True), medians
    assert all(run[1] > run[240] for run in runs)


def test_yearly_volatility_stays_at_the_table_value(btc: list[Bars]) -> None:
    vols = [float(np.std(_returns(bars)) * math.sqrt(365 * 1_440)) for bars in btc]
    assert abs(_median(vols) / SPEC.annual_volatility - 1.0) < 0.1, vols


def test_activity_follows_the_hour_of_the_day(btc: list[Bars], gbm: list[Bars]) -> None:
    hours = (np.arange(MINUTES) // 60) % 24
    sigma = [hourly_ratio(_returns(bars), hours, rms=True) for bars in btc]
    volume = [hourly_ratio(bars.volume, hours) for bars in btc]
    assert _median(sigma) > 1.7 and _median(volume) > 1.7, (sigma, volume)
    returns = _returns(btc[0])
    by_hour = np.sqrt(np.bincount(hours, returns**2) / np.bincount(hours))
    assert 13 <= int(np.argmax(by_hour)) <= 17, "busiest when Europe and the US overlap"
    assert 1 <= int(np.argmin(by_hour)) <= 5, "quietest when both sleep"
    assert max(hourly_ratio(_returns(bars), hours, rms=True) for bars in gbm) < 1.2


def test_the_rhythm_can_be_turned_off() -> None:
    flat = dataclasses.replace(BTC, rhythm_amplitude=0.0, weekend_activity=1.0)
    assert flat.rhythm.flat
    bars = _history(flat, 0)
    hours = (np.arange(MINUTES) // 60) % 24
    assert hourly_ratio(bars.volume, hours) < 1.2


def test_losses_are_larger_than_gains(btc: list[Bars]) -> None:
    for size in (1, 5, 15, 60):
        skews = [skewness(aggregate(_returns(bars), size)) for bars in btc]
        assert _median(skews) < 0.0, (size, skews)


def test_rhythm_levels_are_normalised_and_follow_the_utc_week() -> None:
    rhythm = Rhythm(1.0 / 3.0, 15.0, 0.8)
    hours = np.arange(HOURS_PER_WEEK, dtype=np.int64) * 3_600 * 10**9 + MONDAY_MS * 10**6
    sigma, volume = rhythm.sigmas(hours), rhythm.volumes(hours)
    assert np.mean(sigma**2) == pytest.approx(1.0) and np.mean(volume) == pytest.approx(1.0)
    weekday = sigma[:24]
    assert weekday.max() / weekday.min() == pytest.approx(2.0, rel=0.01)
    assert sigma[5 * 24 + 15] == pytest.approx(0.8 * sigma[15]), "Saturdays are quieter"
    assert hour_of_week(MONDAY_MS * 10**6) == 0
    assert hour_of_week(0) == 72, "1970-01-01 00:00 was a Thursday"
    assert rhythm.sigma(int(hours[40])) == sigma[40]
    assert FLAT.flat and FLAT.sigma(123) == FLAT.volume(456) == 1.0


def test_a_live_actor_steps_the_same_rhythm_as_the_vectorised_path() -> None:
    steps, start_ns = 3_000, MONDAY_MS * 10**6 + 11 * 3_600 * 10**9  # 11:00 UTC, into the peak
    clock = iter(range(start_ns, start_ns + (steps + 2) * 60 * 10**9, 60 * 10**9))
    actor = SymbolActor(
        SPEC,
        BTC,
        60.0,
        np.random.default_rng(3),
        factor=MarketFactor(3),
        volume_rng=np.random.default_rng(4),
        wall_clock=lambda: next(clock),
    )
    mids, lots = [], []
    for _ in range(steps):
        tick = actor.step()
        mids.append(actor.mid)
        lots.append(tick.volume)
    stamps = start_ns + 60 * 10**9 * np.arange(1, steps + 1, dtype=np.int64)
    path = BTC.path(
        SPEC.seed_price,
        60.0 / SECONDS_PER_YEAR,
        steps,
        np.random.default_rng(3),
        MarketFactor(3),
        season=BTC.rhythm.sigmas(stamps),
    )
    np.testing.assert_allclose(mids, path[1:], rtol=1e-15, atol=0)
    returns = np.diff(np.log(path))
    assert volume_volatility_correlation(np.array(lots), returns) > 0.3


def test_spreads_widen_when_volatility_is_high() -> None:
    def mean_spread(boost: float) -> float:
        actor = SymbolActor(SPEC, BTC, 1.0, np.random.default_rng(8), factor=MarketFactor(8))
        actor._process.state.fast += boost  # the fast log-variance component, as in a burst
        ticks = [actor.step() for _ in range(600)]
        return float(np.mean([(t.ask - t.bid) / t.price for t in ticks]))

    calm, burst = mean_spread(0.0), mean_spread(math.log(9.0))  # 3× the volatility
    assert burst > 1.5 * calm, (calm, burst)
