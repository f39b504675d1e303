"""The Connect protocol's framing, pure: content types, envelopes, errors, timeouts.

No I/O here (see :mod:`mdactors.api.connect.routes` for the HTTP side). Reference:
https://connectrpc.com/docs/protocol — unary calls carry one bare message
(``application/json`` or ``application/proto``) and answer errors with an
HTTP status and a JSON body; streaming calls (``application/connect+json``,
``application/connect+proto``) frame every message in an envelope (1 flag
byte, 4-byte big-endian length) and end with an end-stream envelope (flag
``0x02``) whose JSON holds the error, if any.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from mdactors.api.rpc.proto_codec import message_json
from mdactors.api.rpc.service import Code, RpcError

__all__ = [
    "END_STREAM",
    "HTTP_STATUS",
    "Codec",
    "decode_message",
    "encode_message",
    "end_stream",
    "envelope",
    "error_body",
    "parse_codec",
    "parse_timeout",
    "split_envelopes",
]

M = TypeVar("M", bound=Message)

COMPRESSED = 0x01
END_STREAM = 0x02
_MAX_TIMEOUT_DIGITS = 10

#: HTTP status of a unary error, per the Connect protocol.
HTTP_STATUS: dict[Code, int] = {
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}


@dataclass(frozen=True, slots=True)
class Codec:
    """A request's message format: ``json`` or ``proto``, enveloped (streaming) or not."""

    name: str
    streaming: bool

    @property
    def content_type(self) -> str:
        """The response content type."""
        return f"application/{'connect+' if self.streaming else ''}{self.name}"


def parse_codec(content_type: str | None) -> Codec | None:
    """The codec of a ``Content-Type`` header; ``None`` if Connect does not use it."""
    if not content_type:
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    streaming = media.startswith("application/connect+")
    name = media.removeprefix("application/connect+" if streaming else "application/")
    if name not in ("json", "proto"):
        return None
    return Codec(name, streaming)


def parse_timeout(header: str | None) -> float | None:
    """``Connect-Timeout-Ms`` in seconds (``None`` if absent); ValueError if malformed."""
    if header is None:
        return None
    text = header.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_TIMEOUT_DIGITS:
        raise ValueError("Connect-Timeout-Ms must be a positive integer of at most 10 digits")
    return int(text) / 1000.0


def error_body(error: RpcError) -> dict[str, Any]:
    """The Connect error object: ``{"code": "invalid_argument", "message": ...}``."""
    return {"code": error.code.connect_name, "message": error.message}


def envelope(data: bytes, flags: int = 0) -> bytes:
    """One enveloped message."""
    return bytes((flags,)) + len(data).to_bytes(4, "big") + data


def end_stream(error: RpcError | None = None) -> bytes:
    """The end-stream envelope, carrying ``error`` if the call failed."""
    payload: dict[str, Any] = {"error": error_body(error)} if error is not None else {}
    return envelope(json.dumps(payload, separators=(",", ":")).encode(), END_STREAM)


def split_envelopes(body: bytes) -> list[tuple[int, bytes]]:
    """``(flags, data)`` of each envelope in ``body``; ValueError if truncated."""
    out = []
    position = 0
    while position < len(body):
        if len(body) - position < 5:
            raise ValueError("truncated envelope header")
        flags = body[position]
        size = int.from_bytes(body[position + 1 : position + 5], "big")
        start = position + 5
        if len(body) - start < size:
            raise ValueError(f"truncated envelope: {size} bytes announced")
        out.append((flags, body[start : start + size]))
        position = start + size
    return out


def decode_message(codec: Codec, data: bytes, message_type: type[M]) -> M:
    """Parse a request; INVALID_ARGUMENT :class:`RpcError` if it is not one.

    JSON accepts both the proto field names and their camelCase forms, and
    ignores unknown fields (as connect-go does).
    """
    name = message_type.DESCRIPTOR.full_name
    if codec.name == "proto":
        try:
            return message_type.FromString(data)
        except DecodeError:
            raise RpcError(
                Code.INVALID_ARGUMENT, f"malformed {name} message ({len(data)} bytes)"
            ) from None
    message = message_type()
    try:
        json_format.Parse(data.decode("utf-8") or "{}", message, ignore_unknown_fields=True)
    except (json_format.ParseError, UnicodeDecodeError, RecursionError) as error:
        raise RpcError(
            Code.INVALID_ARGUMENT, f"malformed {name} JSON: {str(error)[:200]}"
        ) from None
    return message


def encode_message(codec: Codec, message: Message) -> bytes:
    """A response message in ``codec`` (proto3 JSON uses camelCase names)."""
    if codec.name == "proto":
        return message.SerializeToString()
    return message_json(message)
