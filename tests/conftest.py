"""Shared fixtures: a real service on loopback ports, and clients for it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import trio

from mdactors.app import Service, build_service
from mdactors.settings import load_settings

TEST_ENV = {
    "HOST": "127.0.0.1",
    "HTTP_PORT": "0",
    "GRPC_PORT": "0",
    "WS_PORT": "0",
    "SIM_SEED": "42",
    "PRICE_UPDATE_INTERVAL": "50ms",
    "LOG_LEVEL": "WARNING",
    "SHUTDOWN_TIMEOUT": "3s",
    "DRAIN_DELAY": "0s",
}


@asynccontextmanager
async def running_service(
    env: Mapping[str, str] | None = None, **build: Any
) -> AsyncIterator[Service]:
    """Start a whole service in this trio run on free loopback ports; drain it on exit.

    ``build`` goes to :func:`build_service` (e.g. ``replay=``).
    """
    settings = load_settings(environ={**TEST_ENV, **(env or {})}, dotenv=None)
    service = build_service(settings, handle_signals=False, **build)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        try:
            yield service
        finally:
            service.context.lifecycle.begin_drain()


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    """A running service with the test defaults (seed 42, 50 ms ticks)."""
    async with running_service() as running:
        yield running


@pytest.fixture
async def http(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client pointed at the service's HTTP port."""
    base = f"http://127.0.0.1:{service.ports['http']}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        yield client


async def wait_for(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Poll ``condition`` every 10 ms until true; fail after ``within`` seconds.

    For conditions on state that no event announces (counters, HTTP answers).
    """
    with trio.fail_after(within):
        while not condition():  # noqa: ASYNC110 - nothing to wait on but the state itself
            await trio.sleep(0.01)


class RedisServer:
    """A private ``redis-server`` on a free loopback port, owned by one test.

    :meth:`stop` kills it (as a crash would) and :meth:`start` brings it back
    on the same port, so tests can take Redis away mid-run.
    """

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://`` URL of the server (no credentials)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A sync client with admin rights (the default user)."""
        return redis.Redis(port=self.port, socket_timeout=5)

    def start(self) -> None:
        """Start (or restart) on the same port; return once it answers PING (5 s at most)."""
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 5.0
        while True:
            try:
                self.client().ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.01)

    def stop(self) -> None:
        """Kill the server (SIGKILL, no shutdown save) and wait for it to exit."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=5)
            self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis server, killed after the test.

    Skipped when ``redis-server`` is not installed, unless ``REQUIRE_REDIS``
    is set (as CI does): then its absence fails the test.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("REQUIRE_REDIS"):
            pytest.fail("redis-server not found and REQUIRE_REDIS is set")
        pytest.skip("redis-server not installed")
    server = RedisServer(binary, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
