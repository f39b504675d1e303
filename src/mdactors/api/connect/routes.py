"""RPCs on the HTTP port: ``POST /marketdata.MarketDataService/{Method}`` and
``POST /grpc.health.v1.Health/Check``, in Connect or gRPC-Web.

Browsers (connect-web, grpc-web) and curl call the same RPCs as gRPC clients,
through the same :class:`~mdactors.api.rpc.service.MarketDataRpc`. One
dispatch (:func:`call`) picks the protocol from the request's content type;
each RPC exists once (``_METHODS``) and each protocol is a small
:class:`_Wire` that reads the request message and frames answers:

- Connect: unary methods answer a bare message (JSON or binary) or a Connect
  error with its HTTP status; streams are envelopes closed by an end-stream
  envelope that carries the status.
- gRPC-Web (binary or base64 text, proto or JSON): every message framed,
  the status in a trailer frame, or in the headers of a trailers-only
  answer when the call fails before its first message; always HTTP 200.

Streamed prices go through the stream :class:`~mdactors.engine.outlet.Outlet`
whatever the protocol. Framing lives in :mod:`mdactors.api.connect.protocol`
and :mod:`mdactors.api.connect.grpc_web`; this module only does the HTTP I/O.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import trio
from google.protobuf.message import Message
from quart import Blueprint, Response, request, stream_with_context
from werkzeug.exceptions import RequestEntityTooLarge

from mdactors._proto import marketdata_pb2 as pb
from mdactors._proto.grpc_health.v1 import health_pb2
from mdactors.api.codec import dumps
from mdactors.api.connect.grpc_http import GRPC_SCOPE
from mdactors.api.connect.grpc_web import (
    GrpcWebFormat,
    decode_text,
    parse_format,
    parse_grpc_timeout,
    request_message,
    status_headers,
    take_messages,
    trailer_frame,
)
from mdactors.api.connect.protocol import (
    COMPRESSED,
    HTTP_STATUS,
    Codec,
    decode_message,
    encode_message,
    end_stream,
    envelope,
    error_body,
    parse_codec,
    parse_timeout,
    split_envelopes,
)
from mdactors.api.http.web import context
from mdactors.api.http.write_guard import guard_writes
from mdactors.api.rpc.proto_codec import (
    json_symbol_prefix,
    price_update_json,
    price_update_pb,
    symbol_prefix,
)
from mdactors.api.rpc.reflection import VERSIONS as REFLECTION_VERSIONS
from mdactors.api.rpc.reflection import Reflection
from mdactors.api.rpc.scenario_stream import plan_scenario
from mdactors.api.rpc.service import Code, MarketDataRpc, RpcError
from mdactors.engine.outlet import SlowConsumer

__all__ = [
    "CLIENT_TYPE",
    "GRPC_HTTP_CLIENT_TYPE",
    "GRPC_WEB_CLIENT_TYPE",
    "HEALTH_SERVICE",
    "SERVICE",
    "blueprint",
    "call",
]

SERVICE = "marketdata.MarketDataService"
HEALTH_SERVICE = "grpc.health.v1.Health"
#: ``client_type`` label of Connect streams in metrics.
CLIENT_TYPE = "connect"
#: ``client_type`` label of gRPC-Web streams in metrics.
GRPC_WEB_CLIENT_TYPE = "grpc-web"
#: ``client_type`` label of gRPC streams on the HTTP port (the gRPC port's are ``grpc``).
GRPC_HTTP_CLIENT_TYPE = "grpc-http"

blueprint = Blueprint("connect", __name__)

_ACCEPT = (
    "application/json, application/proto, application/connect+json, application/connect+proto, "
    "application/grpc-web+proto, application/grpc-web+json, application/grpc-web-text+proto, "
    "application/grpc-web-text+json, application/grpc+proto, application/grpc+json"
)
#: How far over the message limit a gRPC-Web body may be: its frame header, and
#: base64's 4 bytes per 3 (plus a few chunks' padding) in text mode.
_FRAME_OVERHEAD = 5
_TEXT_PADDING = 16


class _Wire(Protocol):
    """How one protocol puts a call on HTTP; the RPCs themselves are the same for all."""

    codec: Codec
    """The messages' format (JSON or binary protobuf)."""
    client_type: str
    """``client_type`` label of the protocol's streams in metrics."""
    content_type: str
    """Content type of a streamed response."""

    def body_limit(self, message_limit: int) -> int:
        """Largest request body that can hold a message of ``message_limit`` bytes."""

    def timeout(self) -> float | None:
        """The call's timeout from the request headers (seconds); RpcError if malformed."""

    def request(self, body: bytes, streaming: bool, limit: int) -> bytes:
        """The request message inside ``body``; RpcError if the body is not one."""

    def unary(self, data: bytes) -> Response:
        """The response of a unary call that answered ``data``."""

    def error(self, error: RpcError, streaming: bool) -> Response:
        """The response of a call that failed before its first message."""

    def chunk(self, messages: list[bytes]) -> bytes:
        """Streamed messages, framed, as one body chunk."""

    def end(self, error: RpcError | None) -> bytes:
        """The last chunk of a stream: its status."""


class _ConnectWire:
    """The Connect protocol: bare unary messages with HTTP status errors, enveloped streams."""

    client_type = CLIENT_TYPE

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.content_type = codec.content_type

    def body_limit(self, message_limit: int) -> int:
        return message_limit

    def timeout(self) -> float | None:
        version = request.headers.get("Connect-Protocol-Version")
        if version is not None and version.strip() != "1":
            raise RpcError(Code.INVALID_ARGUMENT, "Connect-Protocol-Version must be 1")
        encoding = request.headers.get("Content-Encoding") or request.headers.get(
            "Connect-Content-Encoding"
        )
        if encoding not in (None, "", "identity"):
            raise RpcError(Code.UNIMPLEMENTED, f"unsupported compression {encoding[:40]!r}")
        try:
            return parse_timeout(request.headers.get("Connect-Timeout-Ms"))
        except ValueError as error:
            raise RpcError(Code.INVALID_ARGUMENT, str(error)) from None

    def request(self, body: bytes, streaming: bool, limit: int) -> bytes:
        if not streaming:
            return body
        try:
            frames = split_envelopes(body)
        except ValueError as error:
            raise RpcError(Code.INVALID_ARGUMENT, str(error)) from None
        if len(frames) != 1:
            raise RpcError(Code.INVALID_ARGUMENT, "expected exactly one request message")
        flags, data = frames[0]
        if flags & COMPRESSED:
            raise RpcError(Code.UNIMPLEMENTED, "compressed messages")
        return data

    def unary(self, data: bytes) -> Response:
        return Response(data, content_type=self.content_type)

    def error(self, error: RpcError, streaming: bool) -> Response:
        if streaming:
            return Response(end_stream(error), content_type=self.content_type)
        return _error(error)

    def chunk(self, messages: list[bytes]) -> bytes:
        return b"".join(envelope(message) for message in messages)

    def end(self, error: RpcError | None) -> bytes:
        return end_stream(error)


class _GrpcWebWire:
    """gRPC-Web: every message framed, the status in a trailer frame, HTTP 200 throughout.

    Also plain gRPC (``web.native``): the same frames, and
    :class:`~mdactors.api.connect.grpc_http.GrpcTrailers` moves the trailer
    frame (or a trailers-only status) into HTTP/2 trailers.
    """

    def __init__(self, web: GrpcWebFormat) -> None:
        self.web = web
        self.codec = web.codec
        self.content_type = web.content_type
        self.client_type = GRPC_HTTP_CLIENT_TYPE if web.native else GRPC_WEB_CLIENT_TYPE

    def body_limit(self, message_limit: int) -> int:
        size = message_limit + _FRAME_OVERHEAD
        return (size + 2) // 3 * 4 + _TEXT_PADDING if self.web.text else size

    def timeout(self) -> float | None:
        encoding = request.headers.get("grpc-encoding")
        if encoding not in (None, "", "identity"):
            raise RpcError(Code.UNIMPLEMENTED, f"unsupported grpc-encoding {encoding[:40]!r}")
        return parse_grpc_timeout(request.headers.get("grpc-timeout"))

    def request(self, body: bytes, streaming: bool, limit: int) -> bytes:
        return request_message(decode_text(body) if self.web.text else body, limit)

    def unary(self, data: bytes) -> Response:
        return Response(self.web.chunk([data], trailer_frame(None)), content_type=self.content_type)

    def error(self, error: RpcError, streaming: bool) -> Response:
        # Trailers-only: the status in the headers, no body.
        return Response(
            b"",
            content_type=self.content_type,
            headers={**status_headers(error), "grpc-accept-encoding": "identity"},
        )

    def chunk(self, messages: list[bytes]) -> bytes:
        return self.web.chunk(messages)

    def end(self, error: RpcError | None) -> bytes:
        return self.web.chunk((), trailer_frame(error))


def _wire(content_type: str | None) -> _Wire | None:
    """The protocol of a request, from its content type; ``None`` if none served here."""
    web = parse_format(content_type)
    if web is not None:
        return _GrpcWebWire(web)
    codec = parse_codec(content_type)
    return None if codec is None else _ConnectWire(codec)


# -- the RPCs, once for every protocol ----------------------------------------

_Unary = Callable[[MarketDataRpc, Codec, Any], Awaitable[bytes]]
_Stream = Callable[[MarketDataRpc, _Wire, Any, float], AsyncIterator[bytes]]
_Bidi = Callable[[_Wire, type[Message], int, float], AsyncIterator[bytes]]


@dataclass(frozen=True, slots=True)
class _Method:
    """One RPC on the HTTP port: its request type and how it runs.

    A unary RPC answers encoded bytes; a streaming one is checked by
    ``validate`` (so a bad request fails before the stream holds a slot),
    then streams chunks through the wire. A bidirectional one (``bidi``,
    reflection) reads the request body as it comes, so only gRPC over
    HTTP/2 carries it.
    """

    request_type: type[Message]
    unary: _Unary | None = None
    stream: _Stream | None = None
    validate: Callable[[MarketDataRpc, Any], object] | None = None
    bidi: _Bidi | None = None


async def _get_price(rpc: MarketDataRpc, codec: Codec, message: pb.GetPriceRequest) -> bytes:
    return encode_message(codec, rpc.get_price(message))


async def _health_check(rpc: MarketDataRpc, codec: Codec, message: pb.HealthCheckRequest) -> bytes:
    return encode_message(codec, rpc.health_check(message))


async def _standard_check(
    rpc: MarketDataRpc, codec: Codec, message: health_pb2.HealthCheckRequest
) -> bytes:
    return encode_message(codec, rpc.standard_check(message))


def _response_json(data: bytes) -> bytes:
    return encode_message(Codec("json", False), pb.SimulationResponse.FromString(data))


async def _simulation(rpc: MarketDataRpc, codec: Codec, message: pb.SimulationRequest) -> bytes:
    """``GenerateSimulation``: the encoded response as is, or turned to JSON off the loop."""
    encoded = await rpc.generate_simulation(message)
    if codec.name == "proto":
        return encoded.data
    return await trio.to_thread.run_sync(_response_json, encoded.data)


def _plan_scenario(rpc: MarketDataRpc, message: pb.ScenarioRequest) -> object:
    return plan_scenario(message, time.time_ns())


async def _scenario_stream(
    rpc: MarketDataRpc, wire: _Wire, message: pb.ScenarioRequest, deadline: float
) -> AsyncIterator[bytes]:
    """Each of a scenario's updates as a chunk, then the stream's end.

    No cancel scope spans a ``yield``: the deadline is checked per update.
    """
    try:
        async for update in rpc.scenario_updates(message):
            if trio.current_time() > deadline:
                raise RpcError(Code.DEADLINE_EXCEEDED, "deadline exceeded")
            yield wire.chunk([encode_message(wire.codec, update)])
        yield wire.end(None)
    except RpcError as error:
        yield wire.end(error)


async def _price_stream(
    rpc: MarketDataRpc, wire: _Wire, message: pb.StreamPricesRequest, deadline: float
) -> AsyncIterator[bytes]:
    """Price updates, one chunk per batch, conflated when the client is behind.

    Registered inside the generator so a client that leaves before the first
    byte never holds a slot. No cancel scope spans a ``yield``: the deadline
    bounds each wait instead.
    """
    try:
        with rpc.price_feed(message, wire.client_type) as feed:
            outlet = feed.outlet
            spellings = feed.plan.spellings.values()
            if wire.codec.name == "json":
                json_prefixes = {name: json_symbol_prefix(name) for name in spellings}

                def encode(name: str, tick: Any) -> bytes:
                    return price_update_json(tick, json_prefixes[name])
            else:
                pb_prefixes = {name: symbol_prefix(name) for name in spellings}

                def encode(name: str, tick: Any) -> bytes:
                    return price_update_pb(tick, pb_prefixes[name])

            while True:
                with trio.move_on_at(deadline) as waited:
                    batch = await feed.next_batch()
                if waited.cancelled_caught:
                    raise RpcError(Code.DEADLINE_EXCEEDED, "deadline exceeded")
                chunk = wire.chunk([encode(name, tick) for name, tick in batch])
                started = trio.current_time()
                yield chunk
                # One that stopped reading got its connection reset by the
                # write guard, which ended the send.
                try:
                    outlet.delivered((tick for _, tick in batch), started)
                except SlowConsumer as slow:
                    raise RpcError(Code.RESOURCE_EXHAUSTED, str(slow)) from None
    except RpcError as error:
        yield wire.end(error)


_REFLECTION = Reflection()


async def _reflection_stream(
    wire: _Wire, request_type: type[Message], limit: int, deadline: float
) -> AsyncIterator[bytes]:
    """``ServerReflectionInfo``: one answer per request message, as each arrives.

    Runs in the request's context (``stream_with_context``) to read its body
    while answering; the deadline is checked as each chunk arrives.
    """
    answers = _REFLECTION.stream()
    buffer = bytearray()
    try:
        try:
            async for chunk in request.body:
                if trio.current_time() > deadline:
                    raise RpcError(Code.DEADLINE_EXCEEDED, "deadline exceeded")
                buffer += chunk
                for data in take_messages(buffer, limit):
                    message = decode_message(wire.codec, data, request_type)
                    yield wire.chunk([encode_message(wire.codec, answers.answer(message))])
        except RequestEntityTooLarge:
            raise RpcError(Code.RESOURCE_EXHAUSTED, "request stream over the body cap") from None
        if buffer:
            raise RpcError(Code.INVALID_ARGUMENT, "the request ended inside a message frame")
        yield wire.end(None)
    except RpcError as error:
        yield wire.end(error)


_METHODS: dict[str, dict[str, _Method]] = {
    SERVICE: {
        "GetPrice": _Method(pb.GetPriceRequest, unary=_get_price),
        "HealthCheck": _Method(pb.HealthCheckRequest, unary=_health_check),
        "GenerateSimulation": _Method(pb.SimulationRequest, unary=_simulation),
        "StreamPrices": _Method(
            pb.StreamPricesRequest, stream=_price_stream, validate=MarketDataRpc.plan_stream
        ),
        "StreamScenario": _Method(
            pb.ScenarioRequest, stream=_scenario_stream, validate=_plan_scenario
        ),
    },
    HEALTH_SERVICE: {"Check": _Method(health_pb2.HealthCheckRequest, unary=_standard_check)},
    **{
        name: {
            "ServerReflectionInfo": _Method(module.ServerReflectionRequest, bidi=_reflection_stream)
        }
        for name, module in REFLECTION_VERSIONS.items()
    },
}


def _error(error: RpcError, status: int | None = None) -> Response:
    return Response(
        dumps(error_body(error)),
        status=status or HTTP_STATUS.get(error.code, 500),
        content_type="application/json",
    )


async def _read_body(limit: int) -> bytes:
    """The request body; RESOURCE_EXHAUSTED past ``limit`` or the app's body cap.

    The app-wide cap (``MAX_CONTENT_LENGTH``) also bounds RPC bodies, so
    the limit named is the smaller of the two. Quart raises its generic 413
    when a body without ``Content-Length`` (chunked) outgrows the cap; the
    caller answers that in its protocol's shape instead.
    """
    cap = request.max_content_length
    if cap is not None:
        limit = min(limit, cap)
    too_large = RpcError(Code.RESOURCE_EXHAUSTED, f"request larger than {limit} bytes")
    length = request.content_length
    if length is not None and length > limit:
        raise too_large
    try:
        body = await request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise too_large from None
    if len(body) > limit:
        raise too_large
    return body


def _trailers_possible() -> bool:
    """Whether the response can carry HTTP trailers (gRPC's status needs them)."""
    # GrpcTrailers marks HTTP/2 requests whose server implements the trailers
    # extension; hypercorn drops trailers unless the request said TE: trailers.
    te = request.headers.get("TE", "")
    return GRPC_SCOPE in request.scope.get("extensions", {}) and "trailers" in te.lower()


async def call(service: str, method: str) -> Response:
    """One call of any RPC served on the HTTP port, in the protocol its content type names."""
    ctx = context()
    rpc = MarketDataRpc(ctx)
    wire = _wire(request.headers.get("Content-Type"))
    spec = _METHODS[service].get(method)
    native = isinstance(wire, _GrpcWebWire) and wire.web.native
    if spec is not None and spec.bidi is not None and not (native and _trailers_possible()):
        message = f"{service}/{method} is a bidirectional stream: call it with gRPC over HTTP/2"
        return _error(RpcError(Code.UNIMPLEMENTED, message), 415)
    if not isinstance(wire, _GrpcWebWire):
        if spec is None:
            error = RpcError(Code.UNIMPLEMENTED, f"unknown method {method[:100]!r}")
            return _error(error, 404)
        streaming = spec.stream is not None
        if wire is None or wire.codec.streaming != streaming:
            expected = (
                "application/connect+(json|proto)" if streaming else "application/(json|proto)"
            )
            response = _error(
                RpcError(Code.UNIMPLEMENTED, f"{method} takes {expected} or application/grpc-web"),
                415,
            )
            response.headers["Accept-Post"] = _ACCEPT
            return response
    elif native and not _trailers_possible():
        return _error(
            RpcError(
                Code.UNIMPLEMENTED,
                "application/grpc needs HTTP/2 (h2c with prior knowledge) and TE: trailers; "
                "over HTTP/1.1 use application/grpc-web",
            ),
            415,
        )
    elif spec is None:
        return wire.error(
            RpcError(Code.UNIMPLEMENTED, f"unknown method {service}/{method[:100]}"), False
        )
    limit = ctx.settings.max_request_bytes
    if spec.bidi is not None:
        try:
            timeout = wire.timeout()
        except RpcError as error:
            return wire.error(error, True)
        deadline = trio.current_time() + timeout if timeout is not None else math.inf
        guard_writes(request.scope)
        bidi = stream_with_context(spec.bidi)
        response = Response(
            bidi(wire, spec.request_type, limit, deadline), content_type=wire.content_type
        )
        response.timeout = None
        return response
    streaming = spec.stream is not None
    try:
        timeout = wire.timeout()
        body = await _read_body(wire.body_limit(limit))
        message = decode_message(
            wire.codec, wire.request(body, streaming, limit), spec.request_type
        )
        if spec.validate is not None:
            spec.validate(rpc, message)  # fail fast, before the stream holds a slot
    except RpcError as error:
        return wire.error(error, streaming)
    if spec.stream is not None:
        deadline = trio.current_time() + timeout if timeout is not None else math.inf
        guard_writes(request.scope)
        response = Response(
            spec.stream(rpc, wire, message, deadline),
            content_type=wire.content_type,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        response.timeout = None
        return response
    assert spec.unary is not None
    try:
        with trio.move_on_after(math.inf if timeout is None else timeout) as waited:
            data = await spec.unary(rpc, wire.codec, message)
        if waited.cancelled_caught:
            raise RpcError(Code.DEADLINE_EXCEEDED, "deadline exceeded")
    except RpcError as error:
        return wire.error(error, False)
    return wire.unary(data)


for _service in _METHODS:
    blueprint.add_url_rule(
        f"/{_service}/<method>",
        f"call_{_service.replace('.', '_')}",
        call,
        methods=["POST"],
        defaults={"service": _service},
    )
