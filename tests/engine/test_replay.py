"""``mdactors replay``: reading recorded files and playing them as the live feed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mdactors.domain.replay import ReplayFileError, read_replay
from mdactors.engine.replay import ReplayOptions
from tests.conftest import running_service, wait_for

TICKS = """timestamp,symbol,price,bid,ask,volume
2026-01-01T00:00:00Z,BTC/USD,43000.5,43000.0,43001.0,0.5
2026-01-01T00:00:00Z,eth-usd,2300.25,,,1.5
2026-01-01T00:00:00.100Z,BTC/USD,43010.0,43009.5,43010.5,0.25
2026-01-01T00:00:00.100Z,eth-usd,2301.0,,,2
2026-01-01T00:00:00.200Z,BTC/USD,42990.75,42990.0,42991.5,
"""


def test_tick_csv_is_read_per_symbol_in_time_order() -> None:
    plan = read_replay(TICKS)
    assert plan.symbols == ["BTC/USD", "ETH/USD"]
    btc = plan.points["BTC/USD"]
    assert [p.price for p in btc] == [43000.5, 43010.0, 42990.75]
    assert [p.offset for p in btc] == pytest.approx([0.0, 0.1, 0.2])
    assert (btc[0].bid, btc[0].ask, btc[2].volume) == (43000.0, 43001.0, 0.0)
    assert plan.points["ETH/USD"][0].bid is None
    assert plan.duration == pytest.approx(0.2)


def test_json_lines_with_epoch_milliseconds() -> None:
    rows = [
        {"timestamp": 1_700_000_000_000, "symbol": "SOL", "price": 150.5},
        {"timestamp": 1_700_000_000_500, "symbol": "SOL", "price": 151.0, "volume": 3},
    ]
    plan = read_replay("\n".join(json.dumps(row) for row in rows) + "\n")
    assert [(p.offset, p.price) for p in plan.points["SOL/USD"]] == [(0.0, 150.5), (0.5, 151.0)]


def test_candles_play_open_both_extremes_and_close() -> None:
    text = """timestamp,symbol,open,high,low,close,volume
2026-01-01T00:00:00Z,BTC,100,110,95,105,8
2026-01-01T00:01:00Z,BTC,105,106,90,92,4
"""
    points = read_replay(text).points["BTC/USD"]
    assert [p.price for p in points] == [100, 95, 110, 105, 105, 106, 90, 92]
    assert [p.offset for p in points[:4]] == [0, 15, 30, 45]
    assert sum(p.volume for p in points) == pytest.approx(12)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("", 1, "empty file"),
        ("timestamp,symbol,price\n", 1, "no rows"),
        ("a,b\n1,2\n", 2, "need columns"),
        ("timestamp,symbol,price\n2026-01-01T00:00:00Z,BTC,abc\n", 2, "could not convert"),
        ("timestamp,symbol,price\n2026-01-01T00:00:00Z,BTC,-5\n", 2, "positive"),
        ("timestamp,symbol,price\n2026-01-01T00:00:00Z,B$C,5\n", 2, "malformed symbol"),
        ("timestamp,symbol,price\nyesterday,BTC,5\n", 2, "Invalid isoformat"),
        ("timestamp,symbol,price\n2026-01-01T00:00:00,BTC,5\n", 2, "UTC offset"),
        ("timestamp,symbol,price\n10,BTC,5\n9,BTC,5\n", 3, "back in time"),
        ("timestamp,symbol,price,bid,ask\n10,BTC,5,6,4\n", 2, "below ask"),
        ("timestamp,symbol,price,bid,ask\n10,BTC,5,4,\n", 2, "both bid and ask"),
        ("timestamp,symbol,price\n10,BTC,5,7\n", 2, "more fields"),
        ('{"timestamp": 1, "symbol": "BTC", "price": 5}\n{oops\n', 2, "not JSON"),
        ("timestamp,symbol,open,high,low,close\n10,BTC,5,4,3,6\n", 2, "low <= open"),
    ],
)
def test_bad_files_name_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ReplayFileError) as caught:
        read_replay(text)
    assert caught.value.line == line
    assert words in str(caught.value)


def test_cli_rejects_a_bad_file_with_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "timestamp,symbol,price\n2026-01-01T00:00:00Z,BTC,43000\n2026-01-01T00:00:01Z,BTC,x\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mdactors", "replay", str(path), "--env-file", "/nonexistent"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "line 3" in result.stderr


async def test_replay_publishes_the_recorded_prices_through_the_actors() -> None:
    options = ReplayOptions(read_replay(TICKS), speed=10.0, loop=False)
    async with running_service(replay=options) as service:
        market = service.context.market
        assert market.symbols == ["BTC/USD", "ETH/USD"]
        driver = service.replay
        assert driver is not None
        await wait_for(lambda: driver.rounds["BTC/USD"] == 1 and driver.rounds["ETH/USD"] == 1)
        seen = await service.context.history.ticks("BTC/USD", 0, 2**62, 3)
        assert [t.price for t in seen] == [43000.5, 43010.0, 42990.75]
        assert [(t.bid, t.ask) for t in seen[:2]] == [(43000.0, 43001.0), (43009.5, 43010.5)]
        assert [t.seq for t in seen] == [seen[0].seq, seen[0].seq + 1, seen[0].seq + 2]
        eth = market.latest("ETH/USD")
        assert eth.price == 2301.0
        assert eth.bid < eth.ask


async def test_replay_loops_when_asked() -> None:
    options = ReplayOptions(read_replay(TICKS), speed=20.0, loop=True)
    async with running_service(replay=options) as service:
        driver = service.replay
        assert driver is not None
        await wait_for(lambda: driver.rounds["BTC/USD"] >= 3)
