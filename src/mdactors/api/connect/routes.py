"""The Connect protocol on the HTTP port: ``POST /marketdata.MarketDataService/{Method}``.

Browsers (connect-web) and curl call the same RPCs as gRPC clients, through
the same :class:`~mdactors.api.rpc.service.MarketDataRpc`. Unary methods answer a
bare message (JSON or binary) or a Connect error with its HTTP status;
``StreamPrices`` answers a stream of envelopes closed by an end-stream
envelope that carries the status. Framing lives in
:mod:`mdactors.api.connect.protocol`; this module only does the HTTP I/O.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio
from google.protobuf.message import Message
from quart import Blueprint, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from mdactors._proto import marketdata_pb2 as pb
from mdactors.api.codec import dumps
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
from mdactors.api.rpc.scenario_stream import plan_scenario
from mdactors.api.rpc.service import Code, MarketDataRpc, RpcError
from mdactors.engine.outlet import Outlet, SlowConsumer

__all__ = ["CLIENT_TYPE", "SERVICE", "blueprint"]

SERVICE = "marketdata.MarketDataService"
#: ``client_type`` label of Connect streams in metrics.
CLIENT_TYPE = "connect"

blueprint = Blueprint("connect", __name__)

_UNARY: dict[str, tuple[type[Message], Callable[[MarketDataRpc, Any], Message]]] = {
    "GetPrice": (pb.GetPriceRequest, MarketDataRpc.get_price),
    "HealthCheck": (pb.HealthCheckRequest, MarketDataRpc.health_check),
}
_STREAMING = {"StreamPrices": pb.StreamPricesRequest, "StreamScenario": pb.ScenarioRequest}
_ACCEPT = "application/json, application/proto, application/connect+json, application/connect+proto"


def _error(error: RpcError, status: int | None = None) -> Response:
    return Response(
        dumps(error_body(error)),
        status=status or HTTP_STATUS.get(error.code, 500),
        content_type="application/json",
    )


async def _read_body(limit: int) -> bytes:
    """The request body; RESOURCE_EXHAUSTED past ``limit`` or the app's body cap.

    The app-wide cap (``MAX_CONTENT_LENGTH``) also bounds Connect bodies, so
    the limit named is the smaller of the two. Quart raises its generic 413
    when a body without ``Content-Length`` (chunked) outgrows the cap; the
    caller answers that in Connect's shape instead.
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


def _check_headers() -> float | None:
    """Validate Connect headers; return the timeout in seconds, if any."""
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


@blueprint.post(f"/{SERVICE}/<method>")
async def call(method: str) -> Response:
    """One Connect call (unary or server-streaming)."""
    ctx = context()
    rpc = MarketDataRpc(ctx)
    codec = parse_codec(request.headers.get("Content-Type"))
    streaming = method in _STREAMING
    if method not in _UNARY and method != "GenerateSimulation" and not streaming:
        return _error(RpcError(Code.UNIMPLEMENTED, f"unknown method {method[:100]!r}"), 404)
    if codec is None or codec.streaming != streaming:
        expected = "application/connect+(json|proto)" if streaming else "application/(json|proto)"
        response = _error(
            RpcError(Code.UNIMPLEMENTED, f"{method} takes {expected}"),
            415,
        )
        response.headers["Accept-Post"] = _ACCEPT
        return response
    try:
        timeout = _check_headers()
        body = await _read_body(ctx.settings.max_request_bytes)
    except RpcError as error:
        return _stream_error(codec, error) if streaming else _error(error)
    if streaming:
        return _stream(rpc, method, codec, body, timeout)
    try:
        if method == "GenerateSimulation":
            with trio.move_on_after(math.inf if timeout is None else timeout) as waited:
                data = await _simulation(rpc, codec, body)
            if waited.cancelled_caught:
                raise RpcError(Code.DEADLINE_EXCEEDED, "deadline exceeded")
        else:
            message_type, handler = _UNARY[method]
            data = encode_message(codec, handler(rpc, decode_message(codec, body, message_type)))
    except RpcError as error:
        return _error(error)
    return Response(data, content_type=codec.content_type)


def _response_json(data: bytes) -> bytes:
    return encode_message(Codec("json", False), pb.SimulationResponse.FromString(data))


async def _simulation(rpc: MarketDataRpc, codec: Codec, body: bytes) -> bytes:
    """``GenerateSimulation``: the encoded response as is, or turned to JSON off the loop."""
    encoded = await rpc.generate_simulation(decode_message(codec, body, pb.SimulationRequest))
    if codec.name == "proto":
        return encoded.data
    return await trio.to_thread.run_sync(_response_json, encoded.data)


def _stream_error(codec: Codec, error: RpcError) -> Response:
    return Response(end_stream(error), content_type=codec.content_type)


def _stream(
    rpc: MarketDataRpc, method: str, codec: Codec, body: bytes, timeout: float | None
) -> Response:
    try:
        frames = split_envelopes(body)
    except ValueError as error:
        return _stream_error(codec, RpcError(Code.INVALID_ARGUMENT, str(error)))
    if len(frames) != 1:
        return _stream_error(
            codec, RpcError(Code.INVALID_ARGUMENT, "expected exactly one request message")
        )
    flags, data = frames[0]
    if flags & COMPRESSED:
        return _stream_error(codec, RpcError(Code.UNIMPLEMENTED, "compressed messages"))
    try:
        message = decode_message(codec, data, _STREAMING[method])
        if method == "StreamScenario":
            plan_scenario(message, time.time_ns())  # fail fast with a plain error
        else:
            rpc.plan_stream(message)  # fail fast, before the stream holds a slot
    except RpcError as error:
        return _stream_error(codec, error)
    deadline = trio.current_time() + timeout if timeout is not None else float("inf")
    body_stream = (
        _scenario_stream(rpc, codec, message, deadline)
        if method == "StreamScenario"
        else _price_stream(rpc, codec, message, deadline)
    )
    guard_writes(request.scope)
    response = Response(
        body_stream,
        content_type=codec.content_type,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.timeout = None
    return response


async def _scenario_stream(
    rpc: MarketDataRpc, codec: Codec, message: pb.ScenarioRequest, deadline: float
) -> AsyncIterator[bytes]:
    """Envelopes of a scenario's updates, then the end-stream envelope.

    No cancel scope spans a ``yield``: the deadline is checked per update.
    """
    try:
        async for update in rpc.scenario_updates(message):
            if trio.current_time() > deadline:
                raise RpcError(Code.DEADLINE_EXCEEDED, "deadline exceeded")
            yield envelope(encode_message(codec, update))
        yield end_stream(None)
    except RpcError as error:
        yield end_stream(error)


async def _price_stream(
    rpc: MarketDataRpc, codec: Codec, message: pb.StreamPricesRequest, deadline: float
) -> AsyncIterator[bytes]:
    """Envelopes of price updates, conflated when the client is behind.

    Registered inside the generator so a client that leaves before the first
    byte never holds a slot. No cancel scope spans a ``yield``: the deadline
    bounds each wait instead.
    """
    ctx = rpc.ctx
    latency = ctx.metrics.publication_latency.labels(CLIENT_TYPE)
    slow_after = ctx.settings.slow_consumer_timeout
    try:
        with rpc.price_feed(message, CLIENT_TYPE) as feed:
            outlet = Outlet(ctx.streams, latency, CLIENT_TYPE, feed.subscription, slow_after)
            spellings = feed.plan.spellings.values()
            if codec.name == "json":
                json_prefixes = {name: json_symbol_prefix(name) for name in spellings}

                def encode(name: str, tick: Any) -> bytes:
                    return price_update_json(tick, json_prefixes[name])
            else:
                pb_prefixes = {name: symbol_prefix(name) for name in spellings}

                def encode(name: str, tick: Any) -> bytes:
                    return price_update_pb(tick, pb_prefixes[name])

            while True:
                with trio.move_on_at(deadline) as waited:
                    batch = await feed.next_batch(outlet.behind)
                if waited.cancelled_caught:
                    raise RpcError(Code.DEADLINE_EXCEEDED, "deadline exceeded")
                chunk = b"".join(envelope(encode(name, tick)) for name, tick in batch)
                started = trio.current_time()
                yield chunk
                # One that stopped reading got its connection reset by the
                # write guard, which ended the send.
                try:
                    outlet.delivered((tick for _, tick in batch), started)
                except SlowConsumer as slow:
                    raise RpcError(Code.RESOURCE_EXHAUSTED, str(slow)) from None
    except RpcError as error:
        yield end_stream(error)
