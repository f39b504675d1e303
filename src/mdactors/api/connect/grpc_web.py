"""The gRPC-Web protocol's framing, pure: content types, frames, trailers, timeouts.

No I/O here (:mod:`mdactors.api.connect.routes` moves it onto HTTP).
Reference: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md and
https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md.

- Content types: ``application/grpc-web`` (= ``+proto``), ``application/grpc-web+proto``,
  ``application/grpc-web+json``; the text variants ``application/grpc-web-text``
  (``+proto``, ``+json``) carry the same bytes base64-encoded, in both directions.
- Every message is a frame: 1 flag byte, a 4-byte big-endian length, the
  message. The status comes last, in a trailer frame (flag ``0x80``) whose
  body is HTTP/1-style header lines (``grpc-status: 0\\r\\n``).
- An error before the first message is a *trailers-only* response: the
  status in the HTTP headers, no body.
- ``grpc-timeout``: at most 8 digits and a unit (``H M S m u n``).

A text-mode body may be several base64 chunks one after another, each
padded (that is how proxies stream it): :func:`decode_text` accepts that,
and :meth:`GrpcWebFormat.chunk` encodes each written chunk on its own.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from mdactors.api.connect.protocol import Codec
from mdactors.api.rpc.status import Code, RpcError

__all__ = [
    "COMPRESSED",
    "TRAILER",
    "GrpcWebFormat",
    "decode_text",
    "encode_grpc_message",
    "frame",
    "parse_format",
    "parse_grpc_timeout",
    "request_message",
    "status_headers",
    "take_messages",
    "trailer_frame",
]

COMPRESSED = 0x01
TRAILER = 0x80
_HEADER = 5
_TIMEOUT = re.compile(r"([0-9]{1,8})([HMSmun])")
_UNIT_SECONDS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
#: Padding ends a base64 chunk; the next chunk starts right after it.
_CHUNK_END = re.compile(rb"(?<==)(?=[^=])")
#: Bytes ``grpc-message`` keeps as they are (PROTOCOL-HTTP2: printable ASCII but '%').
_MESSAGE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


@dataclass(frozen=True, slots=True)
class GrpcWebFormat:
    """A gRPC-Web request's message codec (``proto`` or ``json``) and whether it is text mode.

    ``native`` marks plain gRPC (``application/grpc``): the same frames, but the
    status goes in HTTP/2 trailers (:mod:`mdactors.api.connect.grpc_http` moves
    the trailer frame there).
    """

    codec: Codec
    text: bool
    native: bool = False

    @property
    def content_type(self) -> str:
        """The response content type (always with the codec named)."""
        if self.native:
            return f"application/grpc+{self.codec.name}"
        return f"application/grpc-web{'-text' if self.text else ''}+{self.codec.name}"

    def chunk(self, messages: Iterable[bytes], trailer: bytes = b"") -> bytes:
        """The frames of ``messages`` (then ``trailer``, a :func:`trailer_frame`) as one
        body chunk: binary, or base64 in text mode."""
        data = b"".join(frame(message) for message in messages) + trailer
        return base64.b64encode(data) if self.text else data


def parse_format(content_type: str | None) -> GrpcWebFormat | None:
    """The format of a ``Content-Type`` header; ``None`` if it is neither gRPC-Web's
    nor gRPC's."""
    if not content_type:
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    for prefix, text, native in (
        ("application/grpc-web-text", True, False),
        ("application/grpc-web", False, False),
        ("application/grpc", False, True),
    ):
        if media == prefix:
            return GrpcWebFormat(Codec("proto", False), text, native)
        if media.startswith(prefix + "+"):
            name = media.removeprefix(prefix + "+")
            if name in ("proto", "json"):
                return GrpcWebFormat(Codec(name, False), text, native)
            return None
    return None


def parse_grpc_timeout(header: str | None) -> float | None:
    """``grpc-timeout`` in seconds (``None`` if absent); INVALID_ARGUMENT if malformed."""
    if header is None:
        return None
    match = _TIMEOUT.fullmatch(header.strip())
    if match is None:
        raise RpcError(
            Code.INVALID_ARGUMENT,
            f"malformed grpc-timeout {header[:40]!r}: expected 1-8 digits and a unit "
            "(H, M, S, m, u, n), e.g. 500m",
        )
    return int(match[1]) * _UNIT_SECONDS[match[2]]


def decode_text(body: bytes) -> bytes:
    """The bytes of a text-mode body (one or more padded base64 chunks); INVALID_ARGUMENT
    if it is not base64."""
    try:
        return b"".join(
            base64.b64decode(part, validate=True)
            for part in _CHUNK_END.split(b"".join(body.split()))
        )
    except binascii.Error:
        raise RpcError(Code.INVALID_ARGUMENT, "grpc-web-text body is not base64") from None


def request_message(body: bytes, limit: int) -> bytes:
    """The one message of a unary or server-streaming request body (already binary).

    INVALID_ARGUMENT unless the body is exactly one uncompressed message
    frame; RESOURCE_EXHAUSTED when its announced length exceeds ``limit``.
    """
    if len(body) < _HEADER:
        raise RpcError(Code.INVALID_ARGUMENT, f"expected one message frame, got {len(body)} bytes")
    size = _message_size(body, limit)
    if len(body) - _HEADER != size:
        raise RpcError(
            Code.INVALID_ARGUMENT,
            f"frame announces {size} bytes but {len(body) - _HEADER} follow; "
            "expected exactly one message",
        )
    return body[_HEADER:]


def take_messages(buffer: bytearray, limit: int) -> list[bytes]:
    """The messages of the complete frames at the start of ``buffer``, removed from it.

    For a client stream read as it arrives: an incomplete frame stays in the
    buffer for the next chunk. Errors as :func:`request_message`.
    """
    out = []
    while len(buffer) >= _HEADER:
        size = _message_size(buffer, limit)
        if len(buffer) - _HEADER < size:
            break
        out.append(bytes(buffer[_HEADER : _HEADER + size]))
        del buffer[: _HEADER + size]
    return out


def _message_size(header: bytes | bytearray, limit: int) -> int:
    """The length a request frame's header announces, checked against ``limit`` and its flags."""
    flags = header[0]
    size = int.from_bytes(header[1:_HEADER], "big")
    if size > limit:
        raise RpcError(
            Code.RESOURCE_EXHAUSTED, f"message of {size} bytes is over the limit of {limit}"
        )
    if flags & TRAILER or flags & ~(COMPRESSED | TRAILER):
        raise RpcError(Code.INVALID_ARGUMENT, f"unexpected frame flags 0x{flags:02x}")
    if flags & COMPRESSED:
        raise RpcError(Code.UNIMPLEMENTED, "compressed messages (only identity is supported)")
    return size


def frame(data: bytes, flags: int = 0) -> bytes:
    """One length-prefixed frame."""
    return bytes((flags,)) + len(data).to_bytes(4, "big") + data


def encode_grpc_message(message: str) -> str:
    """``grpc-message``: percent-encoded UTF-8 outside printable ASCII (and ``%``)."""
    return quote(message, safe=_MESSAGE_SAFE)


def status_headers(error: RpcError | None) -> dict[str, str]:
    """``grpc-status`` (and ``grpc-message`` when failed) of a call's end."""
    if error is None:
        return {"grpc-status": "0"}
    return {"grpc-status": str(int(error.code)), "grpc-message": encode_grpc_message(error.message)}


def trailer_frame(error: RpcError | None) -> bytes:
    """The trailer frame that ends a response with ``error``'s status (OK if ``None``)."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in status_headers(error).items())
    return frame(lines.encode("ascii"), TRAILER)
