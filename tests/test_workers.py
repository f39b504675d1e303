"""``mdactors serve --workers N``: processes sharing the ports and one market through Redis."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from mdactors.settings import load_settings
from mdactors.tools.workers import check_workers

from .conftest import RedisServer


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_workers_need_redis_and_fixed_ports() -> None:
    plain = load_settings(environ={}, dotenv=None)
    assert check_workers(plain, 1) is None
    assert "REDIS_URL" in (check_workers(plain, 2) or "")
    zero = load_settings(environ={"REDIS_URL": "redis://x:1/0", "WS_PORT": "0"}, dotenv=None)
    assert "ws_port" in (check_workers(zero, 2) or "")


def test_cli_refuses_workers_without_redis() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mdactors", "serve", "--workers", "2", "--env-file", "/x"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    assert result.returncode == 2
    assert "REDIS_URL" in result.stderr


def test_two_workers_share_the_ports_and_stop_together(redis_server: RedisServer) -> None:
    ports = {"HTTP_PORT": _free_port(), "GRPC_PORT": _free_port(), "WS_PORT": _free_port()}
    env = {
        **os.environ,
        **{name: str(port) for name, port in ports.items()},
        "HOST": "127.0.0.1",
        "REDIS_URL": redis_server.url,
        "PRICE_UPDATE_INTERVAL": "100ms",
        "CLUSTER_LEASE_TTL": "1s",
        "CLUSTER_RENEW_INTERVAL": "300ms",
        "DRAIN_DELAY": "0s",
        "LOG_LEVEL": "WARNING",
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
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(seen) < 2:
            try:
                # a new connection each time: the kernel picks a worker per connection
                with httpx.Client(base_url=url, timeout=2) as client:
                    body = client.get("/api/v1/ready").json()
            except httpx.HTTPError:
                time.sleep(0.05)
                continue
            if body.get("status") == "ready":
                seen.add(body["instance"])
        assert seen == {"market-data-simulator-w1", "market-data-simulator-w2"}
        with httpx.Client(base_url=url, timeout=2) as client:
            price = client.get("/api/v1/prices/BTC-USD/current").json()
        assert price["price"] > 0
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=20) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/api/v1/health", timeout=2)
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
            parent.wait()
