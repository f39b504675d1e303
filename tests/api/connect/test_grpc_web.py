"""gRPC-Web on the HTTP port with real clients: connectrpc's (the Connect project's
own Python runtime; binary mode, proto and JSON, over HTTP/1.1 and HTTP/2) and
Google's grpc-web JavaScript client under Node (its default text mode, and binary);
bad input and the pure framing.

connectrpc's client is synchronous (pyqwest under it), so each call runs in a thread.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import trio
from connectrpc.client import ConnectClientSync
from connectrpc.code import Code as ClientCode
from connectrpc.compat import google_protobuf_binary_codec, google_protobuf_json_codec
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType
from connectrpc.protocol import ProtocolType
from pyqwest import HTTPVersion, SyncClient, SyncHTTPTransport

from mdactors._proto import marketdata_pb2 as pb
from mdactors._proto.grpc_health.v1 import health_pb2
from mdactors.api.connect.grpc_web import (
    decode_text,
    encode_grpc_message,
    frame,
    parse_format,
    parse_grpc_timeout,
    request_message,
    take_messages,
    trailer_frame,
)
from mdactors.api.rpc.service import Code, RpcError
from mdactors.app import Service
from tests.conftest import exclusive, wait_for

SERVICE = "marketdata.MarketDataService"
CALL_TIMEOUT = 15


def method(name: str, request: type, response: type, stream: bool = False, service: str = SERVICE):
    return MethodInfo(
        name=name,
        service_name=service,
        input=request,
        output=response,
        idempotency_level=IdempotencyLevel.UNKNOWN,
        stream_type=StreamType.SERVER_STREAM if stream else StreamType.UNARY,
    )


GET_PRICE = method("GetPrice", pb.GetPriceRequest, pb.GetPriceResponse)
STREAM_PRICES = method("StreamPrices", pb.StreamPricesRequest, pb.PriceUpdate, stream=True)
SIMULATE = method("GenerateSimulation", pb.SimulationRequest, pb.SimulationResponse)
HEALTH = method(
    "Check",
    health_pb2.HealthCheckRequest,
    health_pb2.HealthCheckResponse,
    service="grpc.health.v1.Health",
)
UNKNOWN = method("NoSuchMethod", pb.GetPriceRequest, pb.GetPriceResponse)


WebClient = Callable[..., ConnectClientSync]


@pytest.fixture
async def web_client(service: Service) -> AsyncIterator[WebClient]:
    """Makes connectrpc clients of ``service`` (``http2``, ``json_codec=False``).

    Their connections are closed before the service drains: an idle keep-alive
    connection would hold the drain until ``SHUTDOWN_TIMEOUT``.
    """
    transports: list[SyncHTTPTransport] = []

    def make(http2: bool, json_codec: bool = False) -> ConnectClientSync:
        version = HTTPVersion.HTTP2 if http2 else HTTPVersion.HTTP1
        transports.append(SyncHTTPTransport(http_version=version))
        return ConnectClientSync(
            f"http://127.0.0.1:{service.ports['http']}",
            protocol=ProtocolType.GRPC_WEB,
            codec=google_protobuf_json_codec() if json_codec else google_protobuf_binary_codec(),
            send_compression=None,
            accept_compression=(),
            http_client=SyncClient(transports[-1]),
        )

    yield make
    for transport in transports:
        transport.close()


async def in_thread(work: Callable[[], Any]) -> Any:
    with trio.fail_after(CALL_TIMEOUT):
        return await trio.to_thread.run_sync(work, abandon_on_cancel=True)


def first(stream: Iterator[Any], count: int) -> list[Any]:
    out = []
    for item in stream:
        out.append(item)
        if len(out) == count:
            break
    return out


# -- the real client ----------------------------------------------------------


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
async def test_unary_calls_and_the_health_check(web_client: WebClient, http2: bool) -> None:
    client = web_client(http2)
    price = await in_thread(
        lambda: client.execute_unary(request=pb.GetPriceRequest(symbol="btc-usd"), method=GET_PRICE)
    )
    assert price.symbol == "btc-usd" and price.key == "BTC/USD" and price.price > 0
    health = await in_thread(
        lambda: client.execute_unary(request=health_pb2.HealthCheckRequest(), method=HEALTH)
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    simulation = await in_thread(
        lambda: client.execute_unary(
            request=pb.SimulationRequest(
                symbol="BTC/USD", parameters=pb.SimulationParameters(data_points=50)
            ),
            method=SIMULATE,
        )
    )
    assert simulation.symbol == "BTC/USD" and len(simulation.simulated_data) == 50


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
async def test_stream_prices_delivers_consecutive_updates(
    service: Service, web_client: WebClient, http2: bool
) -> None:
    client = web_client(http2)
    request = pb.StreamPricesRequest(symbols=["BTC/USD"])
    updates = await in_thread(
        lambda: first(client.execute_server_stream(request=request, method=STREAM_PRICES), 4)
    )
    sequences = [update.sequence for update in updates]
    assert sequences == list(range(sequences[0], sequences[0] + 4))
    assert all(update.symbol == "BTC/USD" and update.bid < update.ask for update in updates)
    # Through the outlet: latency observed under its own client type, the slot freed.
    registry = service.context.metrics.registry
    observed = registry.get_sample_value(
        "market_data_publication_latency_seconds_count", {"client_type": "grpc-web"}
    )
    assert observed is not None and observed >= 4
    streams = service.context.streams
    await wait_for(lambda: streams.subscribers[("BTC/USD", "grpc-web")] == 0)


async def test_json_codec(web_client: WebClient) -> None:
    client = web_client(False, json_codec=True)
    price = await in_thread(
        lambda: client.execute_unary(request=pb.GetPriceRequest(symbol="ETH"), method=GET_PRICE)
    )
    assert price.key == "ETH/USD"
    updates = await in_thread(
        lambda: first(
            client.execute_server_stream(
                request=pb.StreamPricesRequest(symbols=["ETH"]), method=STREAM_PRICES
            ),
            2,
        )
    )
    assert [update.symbol for update in updates] == ["ETH", "ETH"]


@pytest.mark.parametrize(
    ("call", "code", "needle"),
    [
        (lambda c: c.execute_unary(request=pb.GetPriceRequest(), method=GET_PRICE),
         ClientCode.INVALID_ARGUMENT, "symbol is required"),
        (lambda c: c.execute_unary(request=pb.GetPriceRequest(symbol="x"), method=UNKNOWN),
         ClientCode.UNIMPLEMENTED, "NoSuchMethod"),
        (lambda c: list(c.execute_server_stream(
            request=pb.StreamPricesRequest(symbols=["NOPE/USD"]), method=STREAM_PRICES)),
         ClientCode.INVALID_ARGUMENT, "NOPE/USD"),
        (lambda c: c.execute_unary(
            request=health_pb2.HealthCheckRequest(service="other"), method=HEALTH),
         ClientCode.NOT_FOUND, "other"),
    ],
    ids=["bad-symbol", "unknown-method", "unknown-stream-symbol", "unknown-health-service"],
)  # fmt: skip
async def test_errors_reach_the_client_as_grpc_statuses(
    web_client: WebClient, call: Callable[[ConnectClientSync], Any], code: ClientCode, needle: str
) -> None:
    client = web_client(False)
    with pytest.raises(ConnectError) as caught:
        await in_thread(lambda: call(client))
    assert caught.value.code == code and needle in caught.value.message


async def test_stream_deadline_ends_with_deadline_exceeded(web_client: WebClient) -> None:
    client = web_client(False)
    received: list[pb.PriceUpdate] = []

    def stream() -> None:
        request = pb.StreamPricesRequest(symbols=["BTC"])
        for update in client.execute_server_stream(
            request=request, method=STREAM_PRICES, timeout_ms=1000
        ):
            received.append(update)

    with pytest.raises(ConnectError) as caught:
        await in_thread(stream)
    assert caught.value.code == ClientCode.DEADLINE_EXCEEDED
    assert received


# -- raw HTTP: text mode, trailers-only, bad input -------------------------------


def grpc_web_frames(body: bytes) -> list[tuple[int, bytes]]:
    out, position = [], 0
    while position < len(body):
        size = int.from_bytes(body[position + 1 : position + 5], "big")
        out.append((body[position], body[position + 5 : position + 5 + size]))
        position += 5 + size
    return out


def trailers(data: bytes) -> dict[str, str]:
    lines = data.decode().strip().split("\r\n")
    return {
        name.lower(): unquote(value.strip())
        for name, value in (line.split(":", 1) for line in lines)
    }


async def test_text_mode_unary_and_health(http: httpx.AsyncClient) -> None:
    body = base64.b64encode(frame(pb.GetPriceRequest(symbol="SOL").SerializeToString()))
    response = await http.post(
        f"/{SERVICE}/GetPrice",
        content=body,
        headers={"Content-Type": "application/grpc-web-text", "X-Grpc-Web": "1"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/grpc-web-text+proto"
    frames = grpc_web_frames(base64.b64decode(response.content))
    assert [flags for flags, _ in frames] == [0, 0x80]
    assert pb.GetPriceResponse.FromString(frames[0][1]).key == "SOL/USD"
    assert trailers(frames[1][1]) == {"grpc-status": "0"}


async def test_text_mode_stream_chunks_decode_one_by_one(http: httpx.AsyncClient) -> None:
    body = base64.b64encode(frame(pb.StreamPricesRequest(symbols=["BTC"]).SerializeToString()))
    updates: list[pb.PriceUpdate] = []
    with trio.fail_after(CALL_TIMEOUT):
        async with http.stream(
            "POST",
            f"/{SERVICE}/StreamPrices",
            content=body,
            headers={"Content-Type": "application/grpc-web-text+proto", "grpc-timeout": "2S"},
        ) as response:
            text = b"".join([chunk async for chunk in response.aiter_bytes()])
    # Each chunk is padded base64 on its own; the whole body decodes chunk by chunk.
    frames = grpc_web_frames(decode_text(text))
    updates = [pb.PriceUpdate.FromString(data) for flags, data in frames if flags == 0]
    assert len(updates) >= 3 and all(update.symbol == "BTC" for update in updates)
    assert frames[-1][0] == 0x80
    assert trailers(frames[-1][1])["grpc-status"] == str(int(Code.DEADLINE_EXCEEDED))


def _frame(message: bytes) -> bytes:
    return frame(message)


@pytest.mark.parametrize(
    ("path", "body", "headers", "code", "needle"),
    [
        ("GetPrice", b"\x00\x00\x00", {}, Code.INVALID_ARGUMENT, "one message frame"),
        ("GetPrice", b"\x00\x00\x00\x00\x09abc", {}, Code.INVALID_ARGUMENT, "announces 9"),
        ("GetPrice", _frame(b"ab") + _frame(b"cd"), {}, Code.INVALID_ARGUMENT, "exactly one"),
        ("GetPrice", b"\x01\x00\x00\x00\x00", {}, Code.UNIMPLEMENTED, "compressed"),
        ("GetPrice", _frame(b'{"symbol": "BTC"}'), {}, Code.INVALID_ARGUMENT, "malformed"),
        ("GetPrice", _frame(b""), {"grpc-timeout": "soon"}, Code.INVALID_ARGUMENT, "grpc-timeout"),
        ("GetPrice", _frame(b""), {"grpc-timeout": "123456789S"}, Code.INVALID_ARGUMENT, "1-8"),
        ("GetPrice", b"\x00\x7f\xff\xff\xff", {}, Code.RESOURCE_EXHAUSTED, "over the limit"),
        ("GetPrice", _frame(b""), {"grpc-encoding": "gzip"}, Code.UNIMPLEMENTED, "gzip"),
        ("Nope", _frame(b""), {}, Code.UNIMPLEMENTED, "Nope"),
        ("StreamPrices", b"\x00\x00", {}, Code.INVALID_ARGUMENT, "one message frame"),
        ("StreamPrices", _frame(b"\xff"), {}, Code.INVALID_ARGUMENT, "malformed"),
    ],
)
async def test_bad_input_is_a_trailers_only_grpc_status(
    http: httpx.AsyncClient,
    path: str,
    body: bytes,
    headers: dict[str, str],
    code: Code,
    needle: str,
) -> None:
    response = await http.post(
        f"/{SERVICE}/{path}",
        content=body,
        headers={"Content-Type": "application/grpc-web+proto", **headers},
    )
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["grpc-status"] == str(int(code))
    assert needle in unquote(response.headers["grpc-message"])


async def test_bad_text_body_and_oversized_body(http: httpx.AsyncClient) -> None:
    response = await http.post(
        f"/{SERVICE}/GetPrice",
        content=b"!!!!",
        headers={"Content-Type": "application/grpc-web-text"},
    )
    assert response.headers["grpc-status"] == str(int(Code.INVALID_ARGUMENT))
    big = frame(b"\x0a" + b"\x00" * (2 * 1024 * 1024))
    response = await http.post(
        f"/{SERVICE}/GetPrice", content=big, headers={"Content-Type": "application/grpc-web"}
    )
    assert response.status_code == 200
    assert response.headers["grpc-status"] == str(int(Code.RESOURCE_EXHAUSTED))


async def test_cors_preflight_allows_grpc_web_headers(http: httpx.AsyncClient) -> None:
    response = await http.options(
        f"/{SERVICE}/GetPrice",
        headers={
            "Origin": "http://ui.test",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-grpc-web, x-user-agent, grpc-timeout",
        },
    )
    assert response.status_code == 204
    allowed = response.headers["access-control-allow-headers"].lower()
    assert {"x-grpc-web", "x-user-agent", "grpc-timeout"} <= set(allowed.split(", "))
    exposed = response.headers["access-control-expose-headers"].lower()
    assert {"grpc-status", "grpc-message"} <= set(exposed.split(", "))


# -- pure framing ---------------------------------------------------------------


def test_formats() -> None:
    assert parse_format("application/grpc-web").content_type == "application/grpc-web+proto"
    assert parse_format("application/grpc-web+json; charset=utf-8").codec.name == "json"
    text = parse_format("application/grpc-web-text")
    assert text is not None and text.text and text.content_type.endswith("-text+proto")
    native = parse_format("application/grpc")
    assert native is not None and native.native and native.content_type == "application/grpc+proto"
    for other in (None, "", "application/grpc+xml", "application/grpc-web+xml", "application/json"):
        assert parse_format(other) is None


def test_grpc_timeouts() -> None:
    assert parse_grpc_timeout(None) is None
    assert parse_grpc_timeout("500m") == pytest.approx(0.5)
    assert parse_grpc_timeout("2S") == 2.0 and parse_grpc_timeout("1H") == 3600.0
    assert parse_grpc_timeout("10u") == pytest.approx(1e-5)
    for bad in ("", "5", "S", "-1S", "1.5S", "123456789n", "5s"):
        with pytest.raises(RpcError) as caught:
            parse_grpc_timeout(bad)
        assert caught.value.code is Code.INVALID_ARGUMENT


def test_trailer_frame_percent_encodes_the_message() -> None:
    data = trailer_frame(RpcError(Code.NOT_FOUND, "no 100% café\r\n"))
    assert data[0] == 0x80
    fields = trailers(data[5:])
    assert fields == {"grpc-status": "5", "grpc-message": "no 100% café\r\n"}
    assert b"%25" in data and b"caf%C3%A9" in data
    assert encode_grpc_message("plain text") == "plain text"
    assert trailer_frame(None)[5:] == b"grpc-status: 0\r\n"


def test_request_message_and_text_chunks() -> None:
    assert request_message(frame(b"abc"), 10) == b"abc"
    with pytest.raises(RpcError):
        request_message(frame(b"abc", 0x80), 10)
    chunks = base64.b64encode(frame(b"ab")) + base64.b64encode(frame(b"cd"))
    assert b"=" in chunks[:-2]  # the first chunk is padded
    assert decode_text(chunks) == frame(b"ab") + frame(b"cd")
    assert json.loads(decode_text(base64.b64encode(b'{"a": 1}'))) == {"a": 1}


def test_take_messages_leaves_an_incomplete_frame_for_the_next_chunk() -> None:
    buffer = bytearray(frame(b"one") + frame(b"two")[:4])
    assert take_messages(buffer, 10) == [b"one"]
    buffer += frame(b"two")[4:]
    assert take_messages(buffer, 10) == [b"two"] and buffer == bytearray()
    with pytest.raises(RpcError) as caught:
        take_messages(bytearray(frame(b"x" * 11)), 10)
    assert caught.value.code is Code.RESOURCE_EXHAUSTED


# -- Google's grpc-web client (JavaScript, under Node), text and binary mode ----------

JS_CLIENT = Path(__file__).parent / "grpc_web_js"


@pytest.fixture(scope="session")
def grpc_web_js() -> Path:
    """Google's grpc-web client installed (npm, versions pinned in package.json)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed to run Google's grpc-web client")
    with exclusive(JS_CLIENT / "package.json"):  # one xdist worker installs
        if not (JS_CLIENT / "node_modules" / "grpc-web").is_dir():
            subprocess.run(
                ["npm", "install", "--no-package-lock", "--no-audit", "--no-fund", "--silent"],
                cwd=JS_CLIENT,
                check=True,
                timeout=180,
            )
    return JS_CLIENT / "call.js"


async def js_call(
    script: Path, service: Service, mode: str, path: str, request: Any, stream_timeout: str = ""
) -> dict[str, Any]:
    command = [
        "node",
        str(script),
        f"http://127.0.0.1:{service.ports['http']}",
        mode,
        path,
        base64.b64encode(request.SerializeToString()).decode(),
        stream_timeout,
    ]
    with trio.fail_after(CALL_TIMEOUT):
        done = await trio.run_process(command, capture_stdout=True, capture_stderr=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize("mode", ["text", "binary"])
async def test_googles_grpc_web_client(service: Service, grpc_web_js: Path, mode: str) -> None:
    price = await js_call(
        grpc_web_js, service, mode, f"/{SERVICE}/GetPrice", pb.GetPriceRequest(symbol="eth-usd")
    )
    assert price["status"]["code"] == 0
    answer = pb.GetPriceResponse.FromString(base64.b64decode(price["messages"][0]))
    assert answer.symbol == "eth-usd" and answer.key == "ETH/USD"
    stream = await js_call(
        grpc_web_js,
        service,
        mode,
        f"/{SERVICE}/StreamPrices",
        pb.StreamPricesRequest(symbols=["BTC"]),
        stream_timeout="1S",
    )
    updates = [pb.PriceUpdate.FromString(base64.b64decode(m)) for m in stream["messages"]]
    sequences = [update.sequence for update in updates]
    assert len(sequences) >= 3  # 50 ms ticks for a second
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    assert stream["status"]["code"] == Code.DEADLINE_EXCEEDED
    simulation = await js_call(
        grpc_web_js,
        service,
        mode,
        f"/{SERVICE}/GenerateSimulation",
        pb.SimulationRequest(symbol="BTC/USD", parameters=pb.SimulationParameters(data_points=30)),
    )
    bars = pb.SimulationResponse.FromString(base64.b64decode(simulation["messages"][0]))
    assert len(bars.simulated_data) == 30
    health = await js_call(
        grpc_web_js, service, mode, "/grpc.health.v1.Health/Check", health_pb2.HealthCheckRequest()
    )
    status = health_pb2.HealthCheckResponse.FromString(base64.b64decode(health["messages"][0]))
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    failed = await js_call(grpc_web_js, service, mode, f"/{SERVICE}/GetPrice", pb.GetPriceRequest())
    assert failed["status"]["code"] == Code.INVALID_ARGUMENT and failed["messages"] == []
    assert "symbol is required" in failed["status"]["message"]
