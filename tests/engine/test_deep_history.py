"""Deep history: the start-up backfill as columns, every interval, served by every API."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime
from itertools import pairwise

import httpx
import numpy as np
import pytest

from mdactors.adapters.history import MemoryHistory
from mdactors.domain.backfill import minute_history
from mdactors.domain.candle_columns import aggregate, minute_columns
from mdactors.domain.candles import INTERVALS, CandleSeries
from mdactors.domain.symbols import spec_for
from mdactors.engine.market import Market
from mdactors.engine.recorder import Recorder
from tests.conftest import running_service

pytestmark = pytest.mark.timeout(120)

KEY = "BTC/USD"
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def _minutes(count: int, end_ms: int):
    spec = spec_for(KEY)
    market = Market([KEY], 1.0, seed=3)
    bars = minute_history(
        spec, market.actor(KEY).model, 43_210.5, end_ms, count, np.random.default_rng(3)
    )
    return minute_columns(KEY, bars, spec.price_decimals, spec.qty_decimals, 6)


@pytest.mark.parametrize("interval", list(INTERVALS))
def test_aggregated_columns_equal_the_recorders_fold(interval: str) -> None:
    # 1,000 minutes starting and ending inside buckets: partial first and forming last.
    end_ms = 1_000 * DAY + 7 * HOUR + 13 * MINUTE
    minutes = _minutes(1_000, end_ms)
    closed, forming = aggregate(minutes, interval)
    series = CandleSeries(KEY, interval)
    folded = []
    for candle in minutes.between(minutes.start_ms, minutes.end_ms, len(minutes)):
        folded += series.update(
            candle.start_ms,
            candle.open,
            candle.high,
            candle.low,
            candle.close,
            candle.volume,
            candle.trades,
        )
    if series.current.end_ms <= end_ms:
        folded += series.close_until(end_ms)
        assert forming is None
    else:
        assert forming is not None and not forming.closed
        assert forming.volume == pytest.approx(series.current.volume, rel=1e-12)
        assert replace(forming, volume=0.0) == replace(series.current, volume=0.0)
    got = closed.between(0, end_ms, len(closed))
    assert [c.start_ms for c in got] == [c.start_ms for c in folded]
    for mine, theirs in zip(got, folded, strict=True):
        assert (mine.open, mine.high, mine.low, mine.close, mine.trades) == (
            theirs.open,
            theirs.high,
            theirs.low,
            theirs.close,
            theirs.trades,
        )
        assert mine.volume == pytest.approx(theirs.volume, rel=1e-12)
        assert mine.closed


def test_columns_between_is_the_latest_in_range() -> None:
    minutes = _minutes(100, 100 * MINUTE)
    every = minutes.between(0, 10**15, 1_000)
    assert len(every) == 100 and every[0].start_ms == 0
    window = minutes.between(10 * MINUTE + 1, 20 * MINUTE, 5)
    assert [c.start_ms // MINUTE for c in window] == [16, 17, 18, 19, 20]
    assert minutes.between(200 * MINUTE, 300 * MINUTE, 5) == []
    assert minutes.between(0, -1, 5) == []


def _recorder(seed: int, now_ns: int) -> Recorder:
    market = Market([KEY], 1.0, seed=seed, wall_clock=lambda: now_ns)
    recorder = Recorder(market, MemoryHistory(1_000))
    recorder.backfill(2)
    return recorder


def test_a_seeded_backfill_is_identical_and_starts_at_midnight() -> None:
    now_ns = (20_000 * DAY + 9 * HOUR + 30 * MINUTE + 5_000) * 1_000_000
    first, again, other = _recorder(5, now_ns), _recorder(5, now_ns), _recorder(6, now_ns)
    for interval in INTERVALS:
        a, b = first.deep[KEY][interval], again.deep[KEY][interval]
        assert a.start_ms == b.start_ms == 19_998 * DAY
        for column in ("open", "high", "low", "close", "volume", "trades"):
            assert np.array_equal(getattr(a, column), getattr(b, column))
    assert not np.array_equal(first.deep[KEY]["1m"].close, other.deep[KEY]["1m"].close)
    minutes = first.deep[KEY]["1m"]
    assert len(minutes) == 2 * 1_440 + 9 * 60 + 30
    assert minutes.close[-1] == first.market.latest(KEY).price


async def test_thirty_days_answer_every_history_query() -> None:
    env = {"BACKFILL_DAYS": "30", "DEFAULT_SYMBOLS": "BTC/USD", "PRICE_UPDATE_INTERVAL": "1h"}
    started_ms = time.time_ns() // 1_000_000
    async with running_service(env) as service:
        base = f"http://127.0.0.1:{service.ports['http']}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            price = service.context.market.latest(KEY).price
            # A strategy's 200 hourly candles, oldest first, the last one forming.
            reply = await http.get("/api/v1/prices/BTC-USD/history?interval=1h&limit=200")
            hours = reply.json()["data"]
            assert len(hours) == 200
            stamps = [datetime.fromisoformat(c["timestamp"]) for c in hours]
            assert all((b - a).total_seconds() == 3_600 for a, b in pairwise(stamps))
            assert all(b["open"] == a["close"] for a, b in pairwise(hours))
            assert hours[-1]["close"] == price

            # A bot's download: 1m klines from the previous midnight (up to 48 h), paged.
            # The previous midnight as the service saw it at start (a run may straddle one).
            since = service.context.recorder.deep[KEY]["1m"].start_ms + 29 * DAY
            assert since in {started_ms - started_ms % DAY - DAY, _yesterdays_midnight()}
            rows: list[list] = []
            cursor = since
            while True:
                page = (
                    await http.get(
                        "/api/v3/klines",
                        params={
                            "symbol": "BTCUSD",
                            "interval": "1m",
                            "startTime": cursor,
                            "limit": 1000,
                        },
                    )
                ).json()
                rows += page
                if len(page) < 1000:
                    break
                cursor = page[-1][0] + MINUTE
            now_ms = time.time_ns() // 1_000_000
            assert rows[0][0] == since
            assert all(b[0] - a[0] == MINUTE for a, b in pairwise(rows))
            # Every minute up to the one forming (which may have turned while paging).
            assert rows[-1][0] in {now_ms - now_ms % MINUTE, now_ms - now_ms % MINUTE - MINUTE}
            assert float(rows[-1][4]) == price

            # Binance's week and month intervals, aggregated from the 1d columns.
            weeks = (
                await http.get("/api/v3/klines", params={"symbol": "BTCUSD", "interval": "1w"})
            ).json()
            assert len(weeks) >= 5
            assert all(b[0] - a[0] == 7 * DAY for a, b in pairwise(weeks))
            assert all((row[0] // DAY) % 7 == 4 for row in weeks), "weeks open on Monday"
            months = (
                await http.get("/api/v3/klines", params={"symbol": "BTCUSD", "interval": "1M"})
            ).json()
            assert len(months) >= 2 and months[-1][4] == weeks[-1][4]

            # The UI API: 30 days and more of daily candles.
            days = (await http.get("/api/v1/market/history/BTC?interval=1d&limit=40")).json()
            assert len(days["data"]) >= 31
    assert service.context.recorder.backfill_bytes < 3_000_000


def _yesterdays_midnight() -> int:
    """00:00 UTC of yesterday, in ms, as of now."""
    now_ms = time.time_ns() // 1_000_000
    return now_ms - now_ms % DAY - DAY


def test_backfill_continues_an_earlier_runs_stored_minutes() -> None:
    now_ns = (20_000 * DAY + 9 * HOUR + 30 * MINUTE + 5_000) * 1_000_000
    earlier = _recorder(7, now_ns).deep[KEY]["1m"]
    # What an earlier run stored: two hours, ending 40 minutes before this start.
    held_from = 20_000 * DAY + 7 * HOUR
    stored = earlier.between(held_from, held_from + 2 * HOUR - 1, 120)
    market = Market([KEY], 1.0, seed=8, wall_clock=lambda: now_ns)
    recorder = Recorder(market, MemoryHistory(1_000))
    recorder.backfill(2, stored={KEY: stored})
    minutes = recorder.deep[KEY]["1m"]
    served = minutes.between(minutes.start_ms, minutes.end_ms, len(minutes))
    assert served[0].start_ms == 19_998 * DAY
    assert all(b.start_ms - a.start_ms == MINUTE for a, b in pairwise(served))
    by_start = {c.start_ms: c for c in served}
    for candle in stored:  # the stored minutes are kept as they were
        mine = by_start[candle.start_ms]
        assert (mine.open, mine.high, mine.low, mine.close) == (
            candle.open,
            candle.high,
            candle.low,
            candle.close,
        )
    # No jump where the stored part meets the made one, on either side.
    assert by_start[held_from - MINUTE].close == stored[0].open
    assert by_start[stored[-1].start_ms + MINUTE].open == stored[-1].close
    assert all(b.open == a.close for a, b in pairwise(served))
    assert served[-1].close == market.latest(KEY).price
    # Without them this seed's path does not pass through the stored prices.
    plain = _recorder(8, now_ns).deep[KEY]["1m"].between(held_from - MINUTE, held_from - 1, 1)
    assert plain[0].close != stored[0].open
