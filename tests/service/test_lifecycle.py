"""Start-up and drain: readiness flips to 503 first, streams end, SIGTERM exits 0."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
import trio

from tests.conftest import running_service, wait_for


async def test_readiness_turns_503_before_listeners_close() -> None:
    async with running_service({"DRAIN_DELAY": "2s"}) as service:
        base = f"http://127.0.0.1:{service.ports['http']}"
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            assert (await client.get("/api/v1/ready")).status_code == 200
            service.context.lifecycle.begin_drain()
            response = await client.get("/api/v1/ready")
            assert response.status_code == 503
            assert response.json()["status"] == "draining"
            health = await client.get("/api/v1/health")
            assert health.status_code == 200
            assert health.json()["status"] == "draining"


def _start_server(*args: str) -> tuple[subprocess.Popen[str], int]:
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "HTTP_PORT": "0",
        "GRPC_PORT": "0",
        "WS_PORT": "0",
        "LOG_FORMAT": "json",
        "DRAIN_DELAY": "200ms",
        "PRICE_UPDATE_INTERVAL": "100ms",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "mdactors", "serve", "--env-file", "/nonexistent", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 20
    port = None
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        entry = json.loads(line)
        if entry.get("event") == "listening" and entry.get("transport") == "http":
            port = int(entry["binds"][0].rsplit(":", 1)[1])
        if entry.get("event") == "serving" and port is not None:
            return process, port
    process.kill()
    raise AssertionError("server did not report its HTTP port")


def test_sigterm_ends_streams_and_exits_zero_quickly() -> None:
    process, port = _start_server()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.get("/api/v1/ready").status_code == 200
            with client.stream("GET", "/api/v1/stream/prices?assets=BTC") as response:
                lines = response.iter_lines()
                assert next(lines).startswith("retry:")
                sent = time.monotonic()
                process.send_signal(signal.SIGTERM)
                rest = list(lines)
            assert "event: end" in rest
        assert process.wait(timeout=10) == 0
        assert time.monotonic() - sent < 5
        assert process.stderr is not None
        events = [json.loads(line).get("event") for line in process.stderr.read().splitlines()]
        assert events.index("drain_started") < events.index("stopped")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_service_drains_with_no_stream_open_within_the_deadline() -> None:
    with trio.fail_after(10):
        async with running_service() as service:
            pass
    assert service.context.lifecycle.phase.value == "stopped"
    assert service.context.streams.active == 0


async def test_dependency_changes_are_logged_once_each(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mdactors.health")
    state = {"status": "ok"}
    async with running_service({"HEALTH_CHECK_INTERVAL": "20ms"}) as service:
        service.context.checks["probe"] = lambda: dict(state)

        def changes() -> list[str]:
            return [
                r.status
                for r in caplog.records
                if getattr(r, "event", "") == "dependency_status" and r.dependency == "probe"
            ]

        state["status"] = "degraded"
        await wait_for(lambda: changes() == ["degraded"])
        state["status"] = "ok"
        await wait_for(lambda: changes() == ["degraded", "ok"])
        await trio.sleep(0.1)  # several more rounds: still one line per change
        assert changes() == ["degraded", "ok"]
