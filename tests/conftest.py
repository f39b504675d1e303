"""Shared fixtures: a real service on loopback ports, and the clients several test modules use
(gRPC, WebSocket, SSE): test modules import from here, never from one another."""

from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import itertools
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

import grpc
import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx
import pytest
import redis
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import WebSocketConnection, open_websocket_url, wrap_client_stream

from mdactors._proto import marketdata_pb2_grpc as pb_grpc
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
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.started = False

    @property
    def url(self) -> str:
        """``redis://`` URL of the server (no credentials)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A sync client with admin rights (the default user)."""
        return redis.Redis(port=self.port, socket_timeout=5)

    def start(self) -> None:
        """Start (or restart) on the same port; return once it answers (5 s at most).

        The port was free when probed, but another process (an xdist worker's
        redis-server or service) may bind it before this server does: when the
        server exits, or the answer comes from another process, the first start
        moves to a new port; a restart keeps its port and fails instead.
        """
        for _ in range(1 if self.started else 3):
            if self._start_once():
                self.started = True
                return
            if not self.started:
                self.port = _free_port()
        raise RuntimeError(f"redis-server did not start on 127.0.0.1:{self.port}")

    def _start_once(self) -> bool:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        process = self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 5.0
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if self.client().info("server")["process_id"] == process.pid:
                    return True
                break  # another process's server answers on this port
            except redis.RedisError:
                time.sleep(0.01)
        self.stop()
        return False

    def stop(self) -> None:
        """Kill the server (SIGKILL, no shutdown save) and wait for it to exit."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=5)
            self.process = None


def _free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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

    Under pytest-xdist each worker is a session of its own, so each worker has
    its own database (named after the worker, e.g. ``gw1``).

    Skipped when PostgreSQL does not answer, unless ``REQUIRE_POSTGRES`` is
    set (as CI does): then its absence fails the tests that need it.
    """
    import psycopg

    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"mdactors_test_{worker}_{os.getpid()}_{secrets.token_hex(3)}"
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


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the existing file ``path``, across processes.

    For a one-time setup that pytest-xdist workers would otherwise race to do
    (an ``npm install``): the first does it, the others wait and find it done.
    """
    with path.open("rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


# -- clients shared by several test modules -----------------------------------

T = TypeVar("T")
BTC = "BTC/USD"


@asynccontextmanager
async def grpc_service(
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[tuple[Service, grpc.Channel]]:
    """The running service and a grpcio channel to its gRPC port."""
    async with running_service(env) as service:
        channel = grpc.insecure_channel(f"127.0.0.1:{service.ports['grpc']}")
        try:
            yield service, channel
        finally:
            channel.close()


async def call(fn: Callable[[], T]) -> T:
    """Run a blocking grpcio call in a worker thread."""
    return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


def stub(channel: grpc.Channel) -> pb_grpc.MarketDataServiceStub:
    return pb_grpc.MarketDataServiceStub(channel)


def rpc_error(fn: Callable[[], Any]) -> grpc.RpcError:
    """Call ``fn`` and return the grpc error it raises."""
    try:
        fn()
    except grpc.RpcError as error:
        return error
    raise AssertionError("expected the RPC to fail")


def take(iterator: Any, count: int) -> list[Any]:
    return list(itertools.islice(iterator, count))


Message = dict[str, Any]


def unwrap(frame: str | bytes) -> Iterator[Message]:
    """The messages of one frame (a batch frame holds several)."""
    body = json.loads(frame)
    if body["type"] == "batch":
        yield from body["messages"]
    else:
        yield body


class Client:
    """A trio-websocket client that reads messages one at a time, batches unwrapped."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.pending: list[Message] = []

    async def send(self, payload: Message | str | bytes) -> None:
        await self.ws.send_message(
            payload if isinstance(payload, str | bytes) else json.dumps(payload)
        )

    async def next(self) -> Message:
        while not self.pending:
            self.pending.extend(unwrap(await self.ws.get_message()))
        return self.pending.pop(0)

    async def next_of(self, kind: str, within: float = 5.0) -> Message:
        """The next message of type ``kind`` (others are skipped)."""
        with trio.fail_after(within):
            while True:
                message = await self.next()
                if message["type"] == kind:
                    return message

    async def request(self, payload: Message | str | bytes, reply: str) -> Message:
        await self.send(payload)
        return await self.next_of(reply)


@asynccontextmanager
async def connect(service: Service, path: str = "/ws") -> AsyncIterator[Client]:
    url = f"ws://127.0.0.1:{service.ports['ws']}{path}"
    async with open_websocket_url(url) as ws:
        client = Client(ws)
        welcome = await client.next_of("welcome")
        assert "BTC/USD" in welcome["symbols"]
        yield client


@asynccontextmanager
async def small_window_client(
    port: int, nursery: trio.Nursery
) -> AsyncIterator[WebSocketConnection]:
    """A client with a tiny receive buffer (the application decides when it reads)."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    ws = await wrap_client_stream(nursery, stream, "127.0.0.1", "/ws")
    try:
        yield ws
    finally:
        await stream.aclose()


async def read_events(lines: AsyncIterator[str], count: int) -> list[dict[str, str]]:
    """Parse up to ``count`` SSE events (fields of each) from a response's lines."""
    events: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    async for line in lines:
        if not line:
            if fields:
                events.append(fields)
                fields = {}
                if len(events) == count:
                    break
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(": ")
        fields[name] = value
    return events


class RawGrpc:
    """A bare HTTP/2 gRPC client (h2) whose flow-control window the test controls."""

    def __init__(self, stream: trio.SocketStream, window: int) -> None:
        self.stream = stream
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.h2.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
        )
        self.messages: list[bytes] = []
        self.trailers: dict[str, str] = {}
        self.resets: list[int] = []
        """Streams the server reset (RST_STREAM), in order."""
        self.unacked = 0
        self._buffer = b""

    @classmethod
    async def connect(cls, port: int, window: int = 65_535) -> RawGrpc:
        client = cls(await trio.open_tcp_stream("127.0.0.1", port), window)
        client.h2.initiate_connection()
        await client.flush()
        return client

    async def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            await self.stream.send_all(data)

    async def start(self, path: str, message: bytes) -> int:
        stream_id = self.h2.get_next_available_stream_id()
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        self.h2.send_headers(stream_id, headers)
        self.h2.send_data(stream_id, b"\0" + len(message).to_bytes(4, "big") + message, True)
        await self.flush()
        return stream_id

    async def _read(self) -> None:
        data = await self.stream.receive_some(65_536)
        if not data:
            raise AssertionError("connection closed")
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                self.unacked += event.flow_controlled_length
                self._buffer += event.data
                while len(self._buffer) >= 5:
                    size = int.from_bytes(self._buffer[1:5], "big")
                    if len(self._buffer) < 5 + size:
                        break
                    self.messages.append(self._buffer[5 : 5 + size])
                    self._buffer = self._buffer[5 + size :]
            elif isinstance(event, h2.events.StreamReset):
                self.resets.append(event.stream_id)
            elif isinstance(event, h2.events.TrailersReceived | h2.events.ResponseReceived):
                headers = dict(event.headers)
                if "grpc-status" in headers:
                    self.trailers = headers
        await self.flush()

    async def messages_until(self, count: int) -> None:
        """Read until ``count`` messages arrived; fail if the call ends first."""
        while len(self.messages) < count:
            if self.trailers:
                raise AssertionError(f"call ended early: {self.status()}")
            await self._read()

    async def wait_reset(self, stream_id: int) -> None:
        """Read until the server resets ``stream_id``."""
        while stream_id not in self.resets:
            await self._read()

    async def wait_trailers(self) -> tuple[int, str]:
        """Read until the call ends; return its status."""
        while not self.trailers:
            await self._read()
        return self.status()

    async def ack(self, stream_id: int) -> None:
        """Open the window again for everything received (one WINDOW_UPDATE)."""
        self.h2.acknowledge_received_data(self.unacked, stream_id)
        self.unacked = 0
        await self.flush()

    def status(self) -> tuple[int, str]:
        return int(self.trailers["grpc-status"]), unquote(self.trailers.get("grpc-message", ""))


ROOT = Path(__file__).resolve().parent.parent
"""The repository's root (tests live in a tree mirroring ``src/mdactors``)."""

PATH = "/marketdata.MarketDataService"
"""Where Connect serves the MarketDataService on the HTTP port."""


async def read_stream(
    client: httpx.AsyncClient, body: bytes, content_type: str, count: int, **headers: str
) -> tuple[list[tuple[int, bytes]], httpx.Response]:
    """Up to ``count`` envelopes (and the end-stream one if it comes first)."""
    frames: list[tuple[int, bytes]] = []
    buffer = b""
    async with client.stream(
        "POST",
        f"{PATH}/StreamPrices",
        content=body,
        headers={"Content-Type": content_type, **headers},
    ) as response:
        async for chunk in response.aiter_bytes():
            buffer += chunk
            # One chunk may hold several envelopes: take no more than ``count``.
            while (
                len(frames) < count
                and len(buffer) >= 5
                and len(buffer) >= 5 + int.from_bytes(buffer[1:5], "big")
            ):
                size = int.from_bytes(buffer[1:5], "big")
                frames.append((buffer[0], buffer[5 : 5 + size]))
                buffer = buffer[5 + size :]
            if len(frames) >= count or (frames and frames[-1][0] & 0x02):
                break
    return frames, response


# --------------------------------------------------------------------------- Binance clients

CLIENT_TIMEOUT_S = 20.0


class LoopbackGuard:
    """Records every outgoing connect; refuses those not to a loopback address."""

    def __init__(self) -> None:
        self.connects: list[Any] = []
        self.refused: list[Any] = []

    def wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        guard = self

        def connect(sock: socket.socket, address: Any) -> Any:
            host = address[0] if isinstance(address, tuple) else None
            if host is not None and not ipaddress.ip_address(host.split("%")[0]).is_loopback:
                guard.refused.append(address)
                raise ConnectionRefusedError(f"test guard: {address!r} is not loopback")
            guard.connects.append(address)
            return original(sock, address)

        return connect


@pytest.fixture
def guard(monkeypatch: pytest.MonkeyPatch) -> LoopbackGuard:
    """Every socket connect in this process is checked (clients and server alike)."""
    watch = LoopbackGuard()
    monkeypatch.setattr(socket.socket, "connect", watch.wrap(socket.socket.connect))
    monkeypatch.setattr(socket.socket, "connect_ex", watch.wrap(socket.socket.connect_ex))
    return watch


async def in_asyncio(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run an asyncio client in a worker thread (its own loop), bounded in time."""

    def run() -> Any:
        return asyncio.run(asyncio.wait_for(main(), CLIENT_TIMEOUT_S))

    return await trio.to_thread.run_sync(run)


def url(service: Service, path: str) -> str:
    """A WebSocket URL of ``path`` on the service's WebSocket port."""
    return f"ws://127.0.0.1:{service.ports['ws']}{path}"


async def receive(ws: WebSocketConnection, within: float = 5.0) -> Any:
    with trio.fail_after(within):
        return json.loads(await ws.get_message())


async def reply_to(ws: WebSocketConnection, request_id: object) -> dict[str, Any]:
    """The reply with ``request_id``, skipping market events."""
    with trio.fail_after(5):
        while True:
            message = await receive(ws)
            if isinstance(message, dict) and message.get("id", "-") == request_id:
                return message


async def send(ws: WebSocketConnection, method: str, params: list[Any], request_id: object) -> None:
    await ws.send_message(json.dumps({"method": method, "params": params, "id": request_id}))


MetricSamples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
"""``/metrics`` samples by name and sorted labels."""


async def metric_samples(service: Service) -> MetricSamples:
    """Every sample of the service's ``/metrics``, by name and labels."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.ports['http']}") as http:
        text = (await http.get("/metrics")).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
