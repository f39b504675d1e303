"""Pure domain logic: symbols, quotes, candles, the book, statistics, backfill."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from mdactors.domain.backfill import backfill_minutes
from mdactors.domain.book import synthesize_book
from mdactors.domain.candles import Candle, CandleSeries, interval_seconds
from mdactors.domain.models import GBM
from mdactors.domain.quotes import quote, tick_lots
from mdactors.domain.stats import correlation_matrix, rolling_stats
from mdactors.domain.symbols import KNOWN_SPECS, SymbolError, normalize_symbol, spec_for


@pytest.mark.parametrize(
    "spelling", ["BTC/USD", "BTC-USD", "btc-usd", "btc_usd", " BTC ", "btc", "Btc/Usd"]
)
def test_every_spelling_normalises_to_one_key(spelling: str) -> None:
    assert normalize_symbol(spelling) == "BTC/USD"


@pytest.mark.parametrize("bad", ["", "   ", "BTC/USD/EUR", "B$C", "/USD", "BTC/", "X" * 40, "€"])
def test_malformed_symbols_are_rejected(bad: str) -> None:
    with pytest.raises(SymbolError):
        normalize_symbol(bad)


def test_known_specs_are_realistic() -> None:
    assert 10_000 < KNOWN_SPECS["BTC/USD"].seed_price < 200_000
    assert 1_000 < KNOWN_SPECS["ETH/USD"].seed_price < 10_000
    assert 50 < KNOWN_SPECS["SOL/USD"].seed_price < 500
    assert KNOWN_SPECS["USDT/USD"].seed_price == 1.0
    assert KNOWN_SPECS["BTC/USD"].spread_bps == (1.0, 5.0)
    assert KNOWN_SPECS["USDT/USD"].spread_bps[1] <= 2.0


def test_unknown_symbols_get_a_deterministic_synthetic_spec() -> None:
    first, second = spec_for("ZZZ/USD"), spec_for("ZZZ/USD")
    assert first == second
    assert 1.0 <= first.seed_price <= 1000.0
    assert spec_for("YYY/USD").seed_price != first.seed_price


@pytest.mark.parametrize("key", sorted(KNOWN_SPECS))
def test_quotes_are_never_crossed_and_spread_stays_in_range(key: str) -> None:
    spec = KNOWN_SPECS[key]
    rng = random.Random(key)
    for _ in range(500):
        mid = spec.seed_price * math.exp(rng.gauss(0, 0.2))
        activity = rng.random()
        bid, ask = quote(spec, mid, activity)
        assert 0 < bid < ask
        assert bid <= mid <= ask
        spread_bps = (ask - bid) / mid * 10_000
        # rounding to the tick can widen the spread by up to two ticks
        assert spread_bps <= spec.spread_bps[1] + 2 * spec.tick_size / mid * 10_000 + 1e-9


def test_tick_volume_is_positive_with_the_daily_mean() -> None:
    spec = KNOWN_SPECS["BTC/USD"]
    rng = np.random.default_rng(1)
    volumes = [
        tick_lots(spec, 1.0, z) / spec.qty_scale for z in rng.standard_normal(20_000).tolist()
    ]
    assert min(volumes) > 0
    assert sum(volumes) / len(volumes) == pytest.approx(spec.daily_volume / 86_400, rel=0.05)


def test_candles_aggregate_ticks_and_close_on_the_next_bucket() -> None:
    series = CandleSeries("BTC/USD", "1m")
    assert series.update(60_000, 10, 10, 10, 10, 1) == []
    series.update(70_000, 12, 12, 12, 12, 1)
    series.update(80_000, 9, 9, 9, 9, 1)
    closed = series.update(125_000, 11, 11, 11, 11, 1)
    assert [(c.open, c.high, c.low, c.close, c.volume, c.closed) for c in closed] == [
        (10, 12, 9, 9, 3, True)
    ]
    current = series.current
    assert current is not None
    assert current.start_ms == 120_000
    assert (current.open, current.close) == (9, 11)


def test_candles_close_on_time_without_a_tick_and_fill_gaps_flat() -> None:
    series = CandleSeries("BTC/USD", "1m")
    series.update(60_500, 10, 10, 10, 10, 1)
    assert series.close_until(119_999) == []
    closed = series.close_until(240_000)
    assert [c.start_ms for c in closed] == [60_000, 120_000, 180_000]
    assert all(c.closed for c in closed)
    flat = closed[1]
    assert (flat.open, flat.high, flat.low, flat.close, flat.volume) == (10, 10, 10, 10, 0)
    assert series.current is not None and series.current.start_ms == 240_000


def test_gap_fill_is_bounded() -> None:
    series = CandleSeries("BTC/USD", "1m", max_fill=5)
    series.update(0, 1, 1, 1, 1, 1)
    closed = series.close_until(10**9)
    assert len(closed) == 6


def test_late_ticks_do_not_reopen_closed_candles() -> None:
    series = CandleSeries("BTC/USD", "5m")
    series.update(300_000, 5, 5, 5, 5, 1)
    series.close_until(600_000)
    assert series.update(310_000, 99, 99, 99, 99, 1) == []
    assert series.current is not None and series.current.high == 5


def test_ohlc_invariants_hold_for_random_streams() -> None:
    rng = random.Random(7)
    for interval in ("1m", "5m", "1h"):
        series = CandleSeries("X/USD", interval)
        candles: list[Candle] = []
        ts, price = 0, 100.0
        for _ in range(5_000):
            ts += rng.randint(1, 30_000)
            price *= math.exp(rng.gauss(0, 0.01))
            candles += series.update(ts, price, price, price, price, rng.random())
            if rng.random() < 0.01:
                candles += series.close_until(ts + rng.randint(0, 600_000))
        assert candles
        for candle in candles:
            assert candle.low <= min(candle.open, candle.close)
            assert candle.high >= max(candle.open, candle.close)
            assert candle.start_ms % (interval_seconds(interval) * 1000) == 0


def test_unknown_interval_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown interval"):
        CandleSeries("BTC/USD", "7x")


@pytest.mark.parametrize("key", ["BTC/USD", "ADA/USD", "USDT/USD"])
def test_book_is_never_crossed_and_sizes_grow_with_depth(key: str) -> None:
    spec = KNOWN_SPECS[key]
    bid, ask = quote(spec, spec.seed_price, 0.5)
    book = synthesize_book(spec, bid, ask, 20, seq=3, ts_ns=0)
    assert book.bids[0][0] < book.asks[0][0]
    assert all(a[0] > b[0] for a, b in zip(book.bids, book.bids[1:], strict=False))
    assert all(a[0] < b[0] for a, b in zip(book.asks, book.asks[1:], strict=False))
    assert book.bids[-1][1] > book.bids[0][1]
    assert book.asks[-1][1] > book.asks[0][1]
    assert synthesize_book(spec, bid, ask, 20, seq=3, ts_ns=0) == book


def test_rolling_stats_and_extension() -> None:
    candles = [
        Candle("X/USD", "1m", 0, 10, 12, 9, 11, 5, 1, True),
        Candle("X/USD", "1m", 60_000, 11, 15, 10, 14, 7, 1, True),
    ]
    stats = rolling_stats(candles, 14, 120_000)
    assert (stats.open, stats.high, stats.low, stats.volume) == (10, 15, 9, 12)
    live = stats.extended(Candle("X/USD", "1m", 120_000, 14, 16, 8, 8, 1), 8, 130_000)
    assert (live.high, live.low, live.volume, live.last) == (16, 8, 13, 8)
    assert live.change == pytest.approx(-2)
    assert live.change_pct == pytest.approx(-20)


def test_correlation_matrix() -> None:
    rng = np.random.default_rng(3)
    base = np.exp(np.cumsum(rng.normal(0, 0.01, 500)))
    noise = np.exp(np.cumsum(rng.normal(0, 0.01, 500)))
    matrix = correlation_matrix({"A": base.tolist(), "B": (base * 2).tolist(), "C": noise.tolist()})
    assert matrix["A"]["B"] == pytest.approx(1.0)
    assert abs(matrix["A"]["C"]) < 0.2
    short = correlation_matrix({"A": [1.0, 2.0], "B": [1.0, 2.0]})
    assert math.isnan(short["A"]["B"])


def test_backfill_ends_exactly_at_the_live_price_with_valid_candles() -> None:
    spec = KNOWN_SPECS["BTC/USD"]
    model = GBM(spec.annual_volatility)
    candles = backfill_minutes(spec, model, 43_210.55, 6_000_000, 60, np.random.default_rng(5))
    assert len(candles) == 60
    assert candles[-1].close == 43_210.55
    assert candles[-1].end_ms == 6_000_000
    for a, b in itertools.pairwise(candles):
        assert b.start_ms - a.start_ms == 60_000
        assert b.open == a.close
    for candle in candles:
        assert candle.low <= min(candle.open, candle.close)
        assert candle.high >= max(candle.open, candle.close)
    again = backfill_minutes(spec, model, 43_210.55, 6_000_000, 60, np.random.default_rng(5))
    assert [c.close for c in again] == [c.close for c in candles]
