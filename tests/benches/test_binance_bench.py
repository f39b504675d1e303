"""bench/binance_fanout.py still runs (briefly), so it never rots."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_binance_fanout_bench_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.binance_fanout", "--subscribers", "3", "--seconds", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["subscribers"] == 3 and report["messages"] > 0
    assert report["server_cpu_us_per_message"] > 0


@pytest.mark.slow
def test_binance_fanout_bench_runs_on_futures() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.binance_fanout",
            "--subscribers",
            "3",
            "--seconds",
            "1.5",
            "--futures",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["path"] == "/fstream" and report["messages"] > 0
    assert report["streams"] == ["btcusd@depth@100ms", "btcusd@markPrice@1s"]
