"""Shared fixtures: a real service on loopback ports, and clients for it."""

from __future__ import annotations

import os
import re
import secrets
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
    "BACKFILL_DAYS": "1",  # a deep backfill has its own test (test_deep_history.py)
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


POSTGRES_ADMIN_URL = os.environ.get(
    "POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
"""The machine's PostgreSQL (trust auth); each test session makes a private database on it."""


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """URL of a private database, created for this test session and dropped after it.

    Skipped when PostgreSQL does not answer, unless ``REQUIRE_POSTGRES`` is
    set (as CI does): then its absence fails the tests that need it.
    """
    import psycopg

    name = f"mdactors_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        if os.environ.get("REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL unreachable and REQUIRE_POSTGRES is set: {error}")
        pytest.skip(f"PostgreSQL unreachable: {error}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_schema(postgres_database: str, request: pytest.FixtureRequest) -> str:
    """A schema name no other test uses (the tables are created by the service under test)."""
    return re.sub(r"[^a-z0-9_]", "_", f"t_{request.node.name[:40].lower()}_{secrets.token_hex(3)}")


class TcpProxy:
    """A loopback TCP proxy to ``target_port`` that a test can take down and bring back.

    Down: every open connection is cut and new ones are closed at once, as a
    PostgreSQL server that died would look to its clients.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.accepting = True
        self._scope = trio.CancelScope()
        self._connections: set[trio.CancelScope] = set()

    def down(self) -> None:
        """Cut every connection and refuse new ones."""
        self.accepting = False
        for scope in list(self._connections):
            scope.cancel()

    def up(self) -> None:
        """Accept and forward connections again."""
        self.accepting = True

    async def _pump(self, source: trio.SocketStream, sink: trio.SocketStream) -> None:
        while data := await source.receive_some(65536):
            await sink.send_all(data)

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            if not self.accepting:
                return
            with trio.CancelScope() as scope:
                self._connections.add(scope)
                try:
                    server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
                    async with server, trio.open_nursery() as nursery:
                        nursery.start_soon(self._pump, client, server)
                        nursery.start_soon(self._pump, server, client)
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                finally:
                    self._connections.discard(scope)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``port`` is set before ``task_status.started()``."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started()
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)
