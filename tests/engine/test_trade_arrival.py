"""Trades arrive on the day's rhythm: how often a live actor's tick prints, hour by hour."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from mdactors.domain.innovations import MarketFactor
from mdactors.domain.model_config import default_model
from mdactors.domain.models import SECONDS_PER_YEAR, PriceModel
from mdactors.domain.rhythm import HOURS_PER_WEEK
from mdactors.domain.stylized import hourly_ratio
from mdactors.domain.symbols import spec_for
from mdactors.domain.tick import Tick, last_trade_id, trade_of
from mdactors.engine.symbol_actor import SymbolActor

SPEC = spec_for("BTC/USD")
BTC = default_model(SPEC)
MONDAY_NS = 1_767_571_200 * 10**9  # 2026-01-05 00:00 UTC
INTERVAL_S = 10
WEEK_STEPS = HOURS_PER_WEEK * 3_600 // INTERVAL_S


def _ticks(model: PriceModel, steps: int = WEEK_STEPS, seed: int = 2) -> list[Tick]:
    """``steps`` ticks (a week by default), ``INTERVAL_S`` apart, from Monday 00:00 UTC."""
    clock = itertools.count(MONDAY_NS + INTERVAL_S * 10**9, INTERVAL_S * 10**9)
    actor = SymbolActor(
        SPEC,
        model,
        float(INTERVAL_S),
        np.random.default_rng(seed),
        factor=MarketFactor(seed),
        wall_clock=lambda: next(clock),
    )
    return [actor.step() for _ in range(steps)]


def _by_hour(ticks: list[Tick]) -> tuple[np.ndarray, np.ndarray]:
    """Per tick: 1 when it printed, and its UTC hour of the day."""
    printed = np.array([tick.volume > 0 for tick in ticks], dtype=float)
    hours = np.array([tick.ts_ns // (3_600 * 10**9) % 24 for tick in ticks])
    return printed, hours


@pytest.fixture(scope="module")
def week() -> list[Tick]:
    return _ticks(BTC)


def test_hourly_trade_counts_follow_the_rhythm(week: list[Tick]) -> None:
    printed, hours = _by_hour(week)
    weekdays = np.arange(len(week)) < 5 * 24 * 3_600 // INTERVAL_S
    counted = hourly_ratio(printed[weekdays], hours[weekdays])
    stamps = np.array([MONDAY_NS + h * 3_600 * 10**9 for h in range(24)], dtype=np.int64)
    levels = BTC.rhythm.volumes(stamps)
    profile = float(levels.max() / levels.min())
    assert profile > 1.7
    assert counted == pytest.approx(profile, rel=0.1), (counted, profile)
    by_hour = np.bincount(hours[weekdays], printed[weekdays])
    assert int(np.argmax(by_hour)) == int(np.argmax(levels)), "busiest when the profile peaks"
    # The volume a tick prints carries the quiet ticks' share: mean volume keeps the table's.
    volume = sum(tick.volume for tick in week) / len(week)
    table = SPEC.daily_volume * INTERVAL_S / 86_400
    assert volume == pytest.approx(table, rel=0.2)


def test_without_a_rhythm_every_tick_prints() -> None:
    flat = dataclasses.replace(BTC, rhythm_amplitude=0.0, weekend_activity=1.0)
    assert flat.rhythm.flat
    printed, hours = _by_hour(_ticks(flat, 24 * 3_600 // INTERVAL_S))
    assert printed.all() and hourly_ratio(printed, hours) == 1.0


def test_print_ids_run_without_holes_and_a_seeded_run_prints_alike(week: list[Tick]) -> None:
    trades = [trade for trade in map(trade_of, week) if trade is not None]
    assert [t.id for t in trades] == list(range(1, len(trades) + 1))
    assert last_trade_id(week[-1]) == len(trades)
    again = _ticks(BTC, 2_000)
    assert [(t.price, t.volume, t.trades) for t in again] == [
        (t.price, t.volume, t.trades) for t in week[:2_000]
    ]


def test_the_rhythm_does_not_move_the_price_path(week: list[Tick]) -> None:
    """Arrival draws from a stream of its own: the prices are those of the model alone."""
    # The actor's first tick (at construction) took the clock's first reading.
    stamps = MONDAY_NS + INTERVAL_S * 10**9 * np.arange(2, 2_002, dtype=np.int64)
    path = BTC.path(
        SPEC.seed_price,
        INTERVAL_S / SECONDS_PER_YEAR,
        2_000,
        np.random.default_rng(2),
        MarketFactor(2),
        season=BTC.rhythm.sigmas(stamps),
    )
    assert [tick.price for tick in week[:2_000]] == pytest.approx(path[1:], abs=SPEC.tick_size)
