"""``mdactors serve --workers N``: processes sharing the ports and one market (Redis or a feed)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from mdactors.settings import ConfigError, load_settings
from mdactors.tools.workers import _supervise, check_workers
from tests.conftest import RedisServer


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_workers_need_fixed_ports() -> None:
    plain = load_settings(environ={}, dotenv=None)
    assert check_workers(plain, 1) is None
    assert check_workers(plain, 2) is None
    zero = load_settings(environ={"REDIS_URL": "redis://x:1/0", "WS_PORT": "0"}, dotenv=None)
    assert "ws_port" in (check_workers(zero, 2) or "")


def test_feed_settings_are_checked() -> None:
    for extra in (
        {"FEED_PUBLISH": "/tmp/a.sock"},
        {"CLUSTER_MODE": "redis", "REDIS_URL": "redis://x:1/0"},
    ):
        with pytest.raises(ConfigError) as raised:
            load_settings(environ={"FEED_SUBSCRIBE": "/tmp/b.sock", **extra}, dotenv=None)
        assert raised.value.variable == "FEED_SUBSCRIBE"
    for bad in ("relative.sock", "/" + "x" * 120):
        with pytest.raises(ConfigError) as raised:
            load_settings(environ={"FEED_PUBLISH": bad}, dotenv=None)
        assert raised.value.variable == "FEED_PUBLISH"


def test_a_worker_that_ends_by_itself_stops_the_others() -> None:
    quits = subprocess.Popen([sys.executable, "-c", "pass"])  # exits 0 at once
    waits = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = time.monotonic()
        assert _supervise([quits, waits]) >= 1  # not a clean stop: nobody asked for it
        assert waits.returncode == -signal.SIGTERM
        assert time.monotonic() - started < 10
    finally:
        waits.kill()
        waits.wait()


_TWICE = """
import os, signal, trio
from mdactors.engine.subscription import StreamRegistry
from mdactors.engine.supervisor import Child, Lifecycle, Supervisor

async def listener(task_status):
    task_status.started()
    await supervisor.lifecycle.draining.wait()
    await trio.sleep(0.3)  # still draining when the repeat arrives

supervisor = Supervisor(Lifecycle(), StreamRegistry(10), 5.0)

async def main():
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run, [Child("listener", listener, listener=True)])
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C reaches the worker's process group
        await trio.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)  # and the parent forwards it
trio.run(main)
print("drained")
"""


def test_a_stop_signal_that_arrives_twice_is_one_graceful_stop() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _TWICE], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "drained"


@contextmanager
def workers(extra: dict[str, str]) -> Iterator[str]:
    """``serve --workers 2`` on free ports with ``extra`` env; yields the HTTP base URL."""
    ports = {"HTTP_PORT": _free_port(), "GRPC_PORT": _free_port(), "WS_PORT": _free_port()}
    env = {
        **os.environ,
        **{name: str(port) for name, port in ports.items()},
        "HOST": "127.0.0.1",
        "PRICE_UPDATE_INTERVAL": "100ms",
        "DRAIN_DELAY": "0s",
        "LOG_LEVEL": "WARNING",
        **extra,
    }
    parent = subprocess.Popen(
        [sys.executable, "-m", "mdactors", "serve", "--workers", "2", "--env-file", "/x"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # so a failed test can stop the workers too
    )
    url = f"http://127.0.0.1:{ports['HTTP_PORT']}"
    try:
        yield url
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=20) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/api/v1/health", timeout=2)
    finally:
        if parent.poll() is None:  # the test failed: stop cleanly if it can (its temp dir)
            parent.send_signal(signal.SIGTERM)
            try:
                parent.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(parent.pid, signal.SIGKILL)
                parent.wait()


def each_worker(url: str, read: Callable[[httpx.Client], object]) -> dict[str, object]:
    """``read`` once per worker, keyed by instance name: new connections until both answered
    (the kernel picks a worker per connection; ``read`` runs on the same connection)."""
    answers: dict[str, object] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(answers) < 2:
        try:
            with httpx.Client(base_url=url, timeout=2) as client:
                ready = client.get("/api/v1/ready").json()
                if ready.get("status") == "ready" and ready["instance"] not in answers:
                    answers[ready["instance"]] = read(client)
        except httpx.HTTPError:
            time.sleep(0.05)
    assert set(answers) == {"market-data-simulator-w1", "market-data-simulator-w2"}
    return answers


def test_two_workers_share_the_ports_and_stop_together(redis_server: RedisServer) -> None:
    cluster = {"REDIS_URL": redis_server.url, "CLUSTER_LEASE_TTL": "1s",
               "CLUSTER_RENEW_INTERVAL": "300ms"}  # fmt: skip
    with workers(cluster) as url:
        prices = each_worker(url, lambda c: c.get("/api/v1/prices/BTC-USD/current").json())
        assert all(price["price"] > 0 for price in prices.values())  # type: ignore[index]


@pytest.mark.slow
def test_without_redis_one_market_process_feeds_the_other_worker() -> None:
    def ticks(client: httpx.Client) -> dict[int, tuple[float, int]]:
        time.sleep(1.0)  # some ticks from the feed first
        params = {"interval": "tick", "limit": 40}  # 4 s: the two reads overlap
        rows = client.get("/api/v1/prices/BTC-USD/history", params=params).json()["data"]
        return {row["sequence"]: (row["price"], row["timestamp_ns"]) for row in rows}

    with workers({"REDIS_URL": ""}) as url:
        seen = each_worker(url, ticks)
        first, second = seen["market-data-simulator-w1"], seen["market-data-simulator-w2"]
        # Sequence 1 is each process's opening tick (same price, own clock); the feed follows.
        common = (first.keys() & second.keys()) - {1}  # type: ignore[union-attr]
        assert len(common) >= 3
        assert {s: first[s] for s in common} == {s: second[s] for s in common}  # type: ignore[index]
        feeds = each_worker(url, lambda c: c.get("/api/v1/ready").json()["checks"].get("feed"))
        assert feeds["market-data-simulator-w1"]["workers"] == 1  # type: ignore[index]
        assert feeds["market-data-simulator-w2"]["connected"] is True  # type: ignore[index]
        shock = {"symbol": "BTC/USD", "shock_percentage": -5, "duration_seconds": 5}
        answers = each_worker(url, lambda c: c.post("/chaos/price-shock", json=shock))
        assert answers["market-data-simulator-w1"].status_code == 201  # type: ignore[attr-defined]
        refused = answers["market-data-simulator-w2"]
        assert refused.status_code == 409  # type: ignore[attr-defined]
        assert refused.json()["error"] == "scenarios_elsewhere"  # type: ignore[attr-defined]
        resets = each_worker(url, lambda c: c.post("/chaos/circuit-breaker/reset", json={}))
        assert resets["market-data-simulator-w1"].status_code == 200  # type: ignore[attr-defined]
        assert resets["market-data-simulator-w2"].status_code == 409  # type: ignore[attr-defined]
