"""``mdactors simulate``: CSV and JSON lines, repeatable with a seed, clear usage errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mdactors.cli import main


def simulate(tmp_path: Path, *options: str) -> Path:
    out = tmp_path / "out"
    assert main(["simulate", "--seed", "7", "--start", "1700000000", "-o", str(out), *options]) == 0
    return out


def test_csv_rows_in_time_order_for_every_symbol(tmp_path: Path) -> None:
    out = simulate(tmp_path, "--symbols", "BTC,eth-usd", "--duration", "10s", "--step", "2s")
    rows = list(csv.DictReader(out.open()))
    assert [row["symbol"] for row in rows] == ["BTC/USD", "ETH/USD"] * 5
    assert rows[0]["timestamp"] == "2023-11-14T22:13:22.000000Z"
    assert rows[-1]["timestamp"] == "2023-11-14T22:13:30.000000Z"
    for row in rows:
        assert 0 < float(row["bid"]) < float(row["price"]) < float(row["ask"])


def test_seeded_runs_repeat_and_scenarios_bend_the_path(tmp_path: Path) -> None:
    first = simulate(tmp_path, "--duration", "1m").read_text()
    assert simulate(tmp_path, "--duration", "1m").read_text() == first
    rally = simulate(tmp_path, "--duration", "1m", "--scenario", "rally", "--format", "jsonl")
    lines = [json.loads(line) for line in rally.read_text().splitlines()]
    plain = list(csv.DictReader(first.splitlines()))
    assert len(lines) == len(plain) == 60
    assert lines[-1]["price"] > float(plain[-1]["price"]) * 1.05
    assert set(lines[0]) == {"timestamp", "symbol", "price", "bid", "ask", "volume"}


@pytest.mark.parametrize(
    "options",
    [
        ["--duration", "1s", "--step", "2s"],
        ["--symbols", "!!"],
        ["--intensity", "5"],
        ["--duration", "forever"],
    ],
)
def test_bad_options_exit_2_with_a_message(
    options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", *options]) == 2
    assert "mdactors simulate:" in capsys.readouterr().err
