"""The tick-latency harness still runs end to end (briefly), so it never rots."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _bench(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args, "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_quick_run_measures_every_transport_and_baseline(tmp_path: Path) -> None:
    result = _bench(
        "run", "--transport", "grpc,ws,sse,connect,grpc-web,grpc-http", "--quick",
        "--subscribers", "3",
        "--duration", "0.5", "--warmup", "0.2", "--idle", "0.2", "--label", "one process",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = tmp_path.glob("*-run.json")
    doc = json.loads(path.read_text())
    assert doc["machine"]["cores"] and doc["commit"]
    servers = {(row["server"], row["transport"]) for row in doc["rows"]}
    assert servers == {
        ("mdactors", "grpc"),
        ("baseline", "grpc"),
        ("mdactors", "ws"),
        ("baseline", "ws"),
        ("mdactors", "sse"),
        ("mdactors", "connect"),
        ("mdactors", "grpc-web"),
        ("mdactors", "grpc-http"),
    }
    for row in doc["rows"]:
        assert row.get("label") == ("one process" if row["server"] == "mdactors" else None)
        assert row["connected"] == 3, row
        assert row["messages"] > 0, row
        assert row["client_errors"] == 0, row
        assert row["latency_ms"]["p50"] > 0
    assert {entry["transport"] for entry in doc["ratios"]} == {"grpc", "ws"}


def test_engine_bench_counts_deliveries() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.engine import engine_deliveries

    result = engine_deliveries(readers=5, seconds=0.1)
    assert result["deliveries_per_s_best"] > 0
    assert result["published"] > 0


def test_sweep_plot_draws_both_servers(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    sys.path.insert(0, str(ROOT))
    from bench.plot import plot_sweep

    rows = [
        {
            "server": server,
            "transport": "grpc",
            "subscribers": count,
            "latency_ms": {"p50": 1.0 * count, "p99": 2.0 * count, "p99.9": 3.0 * count},
            "server_cpu_us_per_msg": 5.0,
        }
        for server in ("mdactors", "baseline")
        for count in (10, 100)
    ]
    path = plot_sweep(rows, tmp_path / "sweep.png", p99_bound_ms=50)
    assert path.read_bytes()[:4] == b"\x89PNG"


_CHILD = (
    "import time\n"
    "end = time.process_time() + 0.5\n"
    "while time.process_time() < end: pass\n"
    "print('burnt', flush=True)\n"
    "time.sleep(60)\n"
)
_PARENT = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {_CHILD!r}])\n"


@pytest.mark.timeout(30)
def test_server_cpu_and_rss_cover_worker_processes() -> None:
    """A server's figures include its workers (``serve --workers``: one parent, N children)."""
    from bench.machine import cpu_seconds, process_tree, rss_bytes

    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline() == "burnt\n"  # the child has used 0.5 s of CPU
        tree = process_tree(parent.pid)
        assert len(tree) == 2 and tree[0] == parent.pid
        child = tree[1]
        # /proc counts whole clock ticks: 0.3 s leaves room for that rounding.
        assert cpu_seconds(parent.pid) >= cpu_seconds(child) >= 0.3
        assert rss_bytes(parent.pid) > rss_bytes(child) > 0
    finally:
        for pid in reversed(process_tree(parent.pid)):
            os.kill(pid, signal.SIGKILL)
        parent.wait()


def test_plot_draws_labelled_series_from_several_results(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    sys.path.insert(0, str(ROOT))
    from bench.plot import sweep_series

    def row(server: str, count: int, label: str | None = None) -> dict[str, object]:
        latency = {"p50": 1.0 * count, "p99": 2.0 * count, "p99.9": 3.0 * count}
        point = {"server": server, "transport": "ws", "subscribers": count}
        return {**point, "latency_ms": latency, "server_cpu_us_per_msg": 5.0, "label": label}

    one = [row("mdactors", n, "1 worker") for n in (100, 10)] + [row("baseline", 10)]
    two = [row("mdactors", n, "2 workers") for n in (10, 100)]
    files = []
    for name, rows in (("one", one), ("two", two)):
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps({"kind": "sweep", "rows": rows}))
    series = sweep_series(one + two)
    assert [
        (name, baseline, [p["subscribers"] for p in points]) for name, baseline, points in series
    ] == [
        ("baseline ws", True, [10]),
        ("1 worker ws", False, [10, 100]),
        ("2 workers ws", False, [10, 100]),
    ]
    result = _bench("plot", *map(str, files), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (png,) = tmp_path.glob("*-plot.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    result = _bench("plot", str(broken), tmp_path=tmp_path)
    assert result.returncode != 0 and "not a bench result document" in result.stderr


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_short_soak_churns_every_transport_and_gives_a_verdict(tmp_path: Path) -> None:
    result = _bench(
        "soak", "--duration", "6s", "--sample", "2s", "--interval", "50ms",
        "--grpc-channels", "2", "--grpc-streams", "6", "--concurrency", "2",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "verdict: " in result.stdout and "MB per 1,000 streams" in result.stdout
    (path,) = tmp_path.glob("*-soak.json")
    doc = json.loads(path.read_text())
    assert len(doc["samples"]) == 4 and len(doc["windows"]) == 3
    for transport in ("grpc", "connect", "sse", "ws", "binance"):
        assert doc["samples"][-1]["completed"][transport] > 0, doc["samples"][-1]
        assert doc["samples"][-1]["failed"][transport] == 0, doc["samples"][-1]
    assert doc["verdict"]["streams"] > 0 and doc["ready_at_end"]["http_status"] == 200
