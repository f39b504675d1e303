"""The model benches still run (briefly), so they never rot."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

BENCH = ROOT / "bench"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["tick_generation.py", "--seconds", "0.05", "--points", "20000"], "ns/tick"),
        (["stylized_facts.py", "--seeds", "2", "--minutes", "3000"], "excess kurtosis 60m"),
    ],
    ids=["tick_generation", "stylized_facts"],
)
def test_bench_runs(command: list[str], expected: str) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / command[0]), *command[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
