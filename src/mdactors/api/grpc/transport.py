"""purerpc plumbing: a server bound to the configured host that drains, and a strict dispatcher.

purerpc (0.8) gives us HTTP/2 + gRPC framing and generated servicers; this
module replaces the parts of its server that do not fit a long-running
market-data service:

- :class:`GrpcServer` subclasses :class:`purerpc.Server` to bind the
  configured host without ``SO_REUSEPORT`` (purerpc binds every interface
  with it, so two processes could silently share a port; ``serve --workers``
  asks for it explicitly) and to drain: stop
  accepting, let the calls end, send GOAWAY, close.
- :class:`_Dispatcher` runs each call under its own cancel scope, cancelled
  when the client resets the stream (purerpc ignores RST_STREAM) or its
  connection closes; enforces ``grpc-timeout``; turns :class:`RpcError`,
  malformed and oversized requests into proper statuses (purerpc answers
  them with CANCELLED or drops the connection).
- A streaming call's messages go through its :class:`Lane`: a blocking
  :meth:`Lane.write` (waits for the HTTP/2 window and for the connection's
  unsent bytes to drain) and a non-blocking :meth:`Lane.try_send` for a
  fan-out. A server-streaming handler either yields its messages, each
  written under the slow-consumer bound
  (:func:`~mdactors.engine.outlet.write_within`), or is a coroutine that
  writes through the lane itself (``StreamPrices``, on its stream's
  :class:`~mdactors.engine.outlet.Outlet`). A client too slow ends with
  RESOURCE_EXHAUSTED instead of stalling.
- Every written batch is followed by a real checkpoint: h2's queueing is not
  a schedule point while the window is open, and a handler that never
  yields starves the whole process.

It touches purerpc internals (``GRPCStream._wait_flow_control_update``,
``GRPCConnection`` hooks); purerpc is pinned to 0.8.0 for that reason.
"""

from __future__ import annotations

import inspect
import logging
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, aclosing, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import anyio.abc
import h2.exceptions
import purerpc
import trio
from google.protobuf.message import DecodeError
from h2.connection import ConnectionInputs, ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.stream import StreamState
from purerpc.grpc_proto import GRPCProtoSocket, GRPCProtoStream
from purerpc.grpc_socket import SocketWrapper
from purerpc.grpclib.buffers import MessageWriteBuffer
from purerpc.grpclib.config import GRPCConfiguration
from purerpc.grpclib.connection import GRPCConnection
from purerpc.grpclib.events import MessageReceived, RequestEnded, RequestReceived, WindowUpdated
from purerpc.grpclib.exceptions import GRPCError, MessageTooLargeError
from purerpc.grpclib.status import Status
from purerpc.rpc import Cardinality

from mdactors.api.grpc.h2_settings import compact_h2_settings
from mdactors.api.rpc.service import Code, RpcError
from mdactors.engine.outlet import SlowConsumer, write_within

__all__ = [
    "CLOSED_STREAMS_KEPT",
    "MAX_RESPONSE_BYTES",
    "ConnectionTables",
    "GrpcCall",
    "GrpcServer",
    "Lane",
    "Writer",
    "grpc_message",
    "slow_consumer_error",
]

MAX_UNSENT_BYTES = 512 * 1024
"""Outbound bytes one connection may have queued; past it, writes to it wait."""
_UNSENT_POLL_S = 0.02
CLOSED_STREAMS_KEPT = 1024
"""Closed streams per connection whose ending h2 remembers (see :class:`_Connection`)."""

# ~10 KB less per connection (see mdactors.api.grpc.h2_settings).
compact_h2_settings()

log = logging.getLogger("mdactors.grpc")

#: Largest response message sent (requests are held to MAX_REQUEST_BYTES).
MAX_RESPONSE_BYTES = 64 * 1024 * 1024

_PEER_GONE = (
    GRPCError,
    h2.exceptions.H2Error,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
)
_FLUSH_GRACE_S = 0.5


def _status(code: Code, message: str = "") -> Status:
    return Status(int(code), message)


@dataclass(slots=True)
class GrpcCall:
    """What a servicer method learns about its call (passed as ``request``)."""

    service: str
    method: str
    timeout: float | None
    lane: Lane | None = None
    """The stream's writes (streaming calls only): blocking, or without a task."""


class _RawRequest:
    """Keeps a request message's bytes; the dispatcher parses them itself."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data = b""

    def ParseFromString(self, data: bytes) -> None:
        """Store ``data`` unparsed."""
        self.data = data


class _Oversized(RequestEnded):
    """A request message longer than the limit arrived (ends the request side)."""

    def __init__(self, stream_id: int, message: str) -> None:
        super().__init__(stream_id)
        self.message = message


class _H2Connection(H2Connection):
    """h2's connection, remembering fewer closed streams and ignoring late WINDOW_UPDATEs.

    h2 remembers how each of the last 65,536 closed streams ended (~120
    bytes each: 8 MB per connection that churns) only to answer frames that
    arrive on them late; in-flight frames arrive within a round trip, not
    thousands of streams later, so we keep :data:`CLOSED_STREAMS_KEPT`.
    RFC 9113 §5.1 says to ignore a WINDOW_UPDATE on a closed stream (one
    that raced the stream's end); h2 3.2 ends the whole connection for one
    on a stream it has dropped, unless that stream was reset.
    """

    MAX_CLOSED_STREAMS = CLOSED_STREAMS_KEPT

    def _receive_window_update_frame(self, frame: Any) -> tuple[list[Any], list[Any]]:
        if frame.stream_id and frame.stream_id not in self.streams:
            try:
                self._get_stream_by_id(frame.stream_id)
            except h2.exceptions.StreamClosedError:
                return [], self.state_machine.process_input(ConnectionInputs.RECV_WINDOW_UPDATE)
        return super()._receive_window_update_frame(frame)


class _Connection(GRPCConnection):
    """Reports stream resets and oversized messages instead of ignoring or dying;
    forgets each ended stream at once (see :meth:`forget`)."""

    def __init__(self, config: GRPCConfiguration, on_reset: Callable[[int], None]) -> None:
        super().__init__(config)
        self._on_reset = on_reset
        self.h2_connection = _H2Connection(self.h2_connection.config)
        self.h2_connection.clear_outbound_data_buffer()
        self._set_h2_connection_local_settings()

    def forget(self, stream_id: int) -> None:
        """Drop every trace of a stream whose call has ended.

        h2 would keep a closed stream in its map until the peer opens the
        next one. A stream our side has not ended (the call failed before its
        trailers) is reset with INTERNAL_ERROR; one whose request is still
        arriving (answered early, e.g. UNIMPLEMENTED) is reset with NO_ERROR,
        which tells the client to stop sending (RFC 9113 §8.1). h2 answers
        any late frame on it from its record of closed streams.
        """
        self.message_read_buffers.pop(stream_id, None)
        h2c = self.h2_connection
        stream = h2c.streams.get(stream_id)
        if stream is None:
            return
        if not stream.closed:
            ended = stream.state_machine.state is StreamState.HALF_CLOSED_LOCAL
            with suppress(h2.exceptions.H2Error):
                h2c.reset_stream(
                    stream_id, ErrorCodes.NO_ERROR if ended else ErrorCodes.INTERNAL_ERROR
                )
        if stream.closed:
            del h2c.streams[stream_id]
            h2c._closed_streams[stream_id] = stream.closed_by

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Send ``data`` in DATA frames no larger than the peer accepts.

        purerpc hands h2 up to a whole flow-control window at once, and h2
        refuses frames above ``max_outbound_frame_size`` (16 KiB by default):
        without the split, any message over 16 KiB failed and the call hung.
        """
        size = self.h2_connection.max_outbound_frame_size
        last = max(len(data) - 1, 0) // size * size
        for offset in range(0, last + 1, size):
            chunk = data[offset : offset + size]
            super().send_data(stream_id, chunk, end_stream=end_stream and offset == last)

    def _stream_reset(self, event: Any) -> list[Any]:
        self._on_reset(event.stream_id)
        return []

    def _data_received(self, event: Any) -> list[Any]:
        stream_id = event.stream_id
        if stream_id not in self.message_read_buffers:
            # The rest of a request already answered (oversized): discard it.
            with suppress(h2.exceptions.H2Error):
                self.h2_connection.acknowledge_received_data(
                    event.flow_controlled_length, stream_id
                )
            return []
        try:
            return super()._data_received(event)
        except MessageTooLargeError as error:
            del self.message_read_buffers[stream_id]
            with suppress(h2.exceptions.H2Error):
                self.h2_connection.acknowledge_received_data(
                    event.flow_controlled_length, stream_id
                )
            return [_Oversized(stream_id, str(error))]


class _Stream(GRPCProtoStream):
    """A call's stream whose responses may be larger than the request limit.

    purerpc caps outgoing messages at the configuration's
    ``max_message_length``, which is our *request* limit (MAX_REQUEST_BYTES);
    a response (a GenerateSimulation of many points) may be up to
    :data:`MAX_RESPONSE_BYTES`. Otherwise purerpc's send loop, unchanged.
    """

    async def send_message(self, message: Any) -> None:
        """Serialise and send one message (purerpc's version skips our ``_send``)."""
        await self._send(message.SerializeToString())

    async def _send(self, message: bytes, compress: bool = False) -> None:
        connection = self._grpc_connection
        buffer = MessageWriteBuffer(connection.config.message_encoding, MAX_RESPONSE_BYTES)
        buffer.write_message(message, compress)
        while buffer:
            window = connection.flow_control_window(self._stream_id)
            if window <= 0:
                await self._wait_flow_control_update()
                continue
            connection.send_data(self._stream_id, buffer.data_to_send(min(window, len(buffer))))
            await self._socket.flush()


class Writer(SocketWrapper):
    """purerpc's connection writer, which a fan-out may also write through without blocking.

    purerpc's writer task sends whatever h2 has queued whenever it is woken
    (two task switches per message). :meth:`write_now` writes h2's queue at
    once from the calling task when the writer is idle; what the socket does
    not take is left to the writer task, which sends it before anything else.
    """

    def __init__(self, connection: GRPCConnection, stream: anyio.abc.SocketStream) -> None:
        super().__init__(connection, stream)
        self._socket = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        self._owed = b""
        self._sending = False
        self.deferred = 0
        """Writes the socket took only part of (the writer task sent the rest)."""

    async def _writer_thread(self) -> None:
        while True:
            data = self._owed or self._grpc_connection.data_to_send()
            self._owed = b""
            if data:
                self._sending = True
                try:
                    await self._stream.send(data)
                finally:
                    self._sending = False
            elif self._running:
                await self._flush_event.wait()
                self._flush_event = anyio.Event()
            else:
                return

    def wake(self) -> None:
        """Have the writer task send what h2 has queued."""
        self._flush_event.set()

    def unsent(self) -> int:
        """Bytes queued for the connection and not yet handed to the kernel."""
        return len(self._grpc_connection.h2_connection._data_to_send) + len(self._owed)

    def write_now(self) -> None:
        """Hand h2's queue to the kernel without blocking (the writer task sends the rest)."""
        if self._sending or self._owed or not self._running:
            self._flush_event.set()
            return
        data = self._grpc_connection.data_to_send()
        if not data:
            return
        fd = self._socket.fileno()
        try:
            written = os.write(fd, data) if fd >= 0 else 0
        except OSError:  # would block, or the peer is gone: the writer task finds out
            written = 0
        if written < len(data):
            self.deferred += 1
            self._owed = data[written:]
            self._flush_event.set()


class Lane:
    """One streaming call's writes of gRPC-framed messages (see :func:`grpc_message`).

    :meth:`write` is the call's own task's blocking write. :meth:`try_send`
    is the non-blocking one, for a fan-out (with :meth:`Writer.write_now`):
    it frames a message as one HTTP/2 DATA frame itself and does h2's
    flow-control bookkeeping (h2's ``send_data`` costs ~9 µs a frame in
    Python); it refuses whatever h2 would refuse or the call's own task must
    handle: a closed stream or connection, a window or frame size too small,
    a connection with too much unsent.
    """

    __slots__ = ("_connection", "_h2", "_stream", "stream_id", "writer")

    def __init__(self, stream: GRPCProtoStream, writer: Writer) -> None:
        self.stream_id = stream.stream_id
        self._stream = stream
        self._connection: GRPCConnection = stream._grpc_connection
        self._h2 = self._connection.h2_connection
        self.writer = writer

    async def write(self, messages: Sequence[bytes]) -> None:
        """Queue gRPC-framed ``messages`` on the stream, waiting as long as it must.

        A message is started only once the HTTP/2 window takes it whole (one
        larger than a DATA frame: a frame's worth, then the rest as the window
        allows, as purerpc does), so a write ended mid-way (by the outlet's
        timeout) leaves no truncated message before the call's trailers. It
        waits too while the connection has more than :data:`MAX_UNSENT_BYTES`
        queued: a client may open a huge window and stop reading, and
        purerpc's writer never pushes back. No bound in time: the caller's.
        """
        connection = self._connection
        stream_id = self.stream_id
        writer = self.writer
        frame = self._h2.max_outbound_frame_size
        index, count = 0, len(messages)
        while index < count:
            if writer.unsent() > MAX_UNSENT_BYTES:
                await trio.sleep(_UNSENT_POLL_S)
                continue
            window = connection.flow_control_window(stream_id)
            end, size = index, 0
            while end < count and size + len(messages[end]) <= window:
                size += len(messages[end])
                end += 1
            if end > index:
                connection.send_data(stream_id, b"".join(messages[index:end]))
                writer.wake()
                index = end
            elif len(messages[index]) > frame and window >= frame:
                await self._write_large(messages[index])
                index += 1
            else:
                await self._stream._wait_flow_control_update()
        await trio.lowlevel.checkpoint()

    async def _write_large(self, message: bytes) -> None:
        connection = self._connection
        while message:
            window = connection.flow_control_window(self.stream_id)
            if window <= 0:
                await self._stream._wait_flow_control_update()
                continue
            connection.send_data(self.stream_id, message[:window])
            message = message[window:]
            self.writer.wake()

    def try_send(self, message: bytes) -> bool:
        """Queue gRPC-framed ``message`` (see :func:`grpc_message`); ``False``: not sent."""
        h2c = self._h2
        stream = h2c.streams.get(self.stream_id)
        size = len(message)
        if (
            stream is None
            or stream.state_machine.state not in _SENDING_STATES
            or h2c.state_machine.state is not ConnectionState.SERVER_OPEN
            or size > h2c.max_outbound_frame_size
            or size > h2c.outbound_flow_control_window
            or size > stream.outbound_flow_control_window
            or self.writer.unsent() > MAX_UNSENT_BYTES
        ):
            return False
        h2c._data_to_send += _DATA_HEADER.pack(size >> 8, size & 0xFF, 0, 0, self.stream_id)
        h2c._data_to_send += message
        h2c.outbound_flow_control_window -= size
        stream.outbound_flow_control_window -= size
        return True


_SENDING_STATES = frozenset({StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE})
_DATA_HEADER = struct.Struct(">HBBBI")
"""An HTTP/2 frame header of type DATA (0), no flags: 24-bit length, type, flags, stream id."""
_GRPC_PREFIX = struct.Struct(">BI")


def grpc_message(data: bytes) -> bytes:
    """``data`` with gRPC's length prefix (uncompressed), as :meth:`Lane.try_send` takes it."""
    return _GRPC_PREFIX.pack(0, len(data)) + data


class _Socket(GRPCProtoSocket):
    """A server-side purerpc socket over :class:`_Connection` and :class:`_Stream`."""

    StreamClass = _Stream

    def __init__(
        self,
        config: GRPCConfiguration,
        sock: anyio.abc.SocketStream,
        on_reset: Callable[[int], None],
    ) -> None:
        super().__init__(config, sock)
        self._grpc_connection = _Connection(config, on_reset)
        self._socket = self.writer = Writer(self._grpc_connection, sock)

    @property
    def connection(self) -> _Connection:
        """The gRPC/HTTP/2 state machine."""
        return self._grpc_connection

    def forget(self, stream_id: int) -> None:
        """Drop every trace of a stream whose call has ended (however it ended).

        purerpc removes a stream from ``_streams`` only after both sides
        closed it normally; a stream the client reset stayed forever, and
        every connection-level WINDOW_UPDATE woke it again. Request bytes
        still queued for the stream are acknowledged, or the connection's
        receive window would shrink by them for good.
        """
        stream = self._streams.pop(stream_id, None)
        connection = self._grpc_connection
        if stream is not None:
            sender, receiver = stream._incoming_events
            while True:
                try:
                    event = receiver.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
                if isinstance(event, MessageReceived):
                    with suppress(h2.exceptions.H2Error):
                        connection.acknowledge_received_data(
                            stream_id, event.flow_controlled_length
                        )
            sender.close()
            receiver.close()
        connection.forget(stream_id)
        self.writer.wake()

    async def _listen(self) -> AsyncIterator[GRPCProtoStream]:
        """purerpc's read loop, for the streams of calls still running only.

        Events of a forgotten stream are dropped (its DATA is acknowledged by
        :class:`_Connection`); a WINDOW_UPDATE wakes the live streams only,
        without a coroutine each.
        """
        connection = self._grpc_connection
        streams = self._streams
        while True:
            try:
                data = await self._socket.recv(self._receive_buffer_size)
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return
            events = connection.receive_data(data)
            self.writer.wake()
            for event in events:
                if isinstance(event, WindowUpdated):
                    if event.stream_id == 0:
                        for stream in streams.values():
                            stream._flow_control_update_event.set()
                    elif (stream := streams.get(event.stream_id)) is not None:
                        stream._flow_control_update_event.set()
                    continue
                if isinstance(event, RequestReceived):
                    stream = self._allocate_stream(event.stream_id)
                elif (stream := streams.get(event.stream_id)) is None:
                    continue
                # No checkpoint between the lookup and the send: the call
                # cannot end (and close this queue) in between.
                stream._incoming_events[0].send_nowait(event)
                if isinstance(event, RequestReceived):
                    yield stream
                elif isinstance(event, RequestEnded):
                    stream._close_remote()

    async def goaway(self) -> None:
        """Tell the client no new calls will be accepted on this connection."""
        try:
            self._grpc_connection.h2_connection.close_connection()
            await self._socket.flush()
        except h2.exceptions.H2Error:
            pass


@dataclass(frozen=True, slots=True)
class ConnectionTables:
    """How many entries one connection's per-stream tables hold.

    A stream that has ended, however it ended, is in none of them but
    ``closed_record``, which is bounded by :data:`CLOSED_STREAMS_KEPT`.
    """

    calls: int
    """Our dispatcher's calls (one cancel scope each)."""
    streams: int
    """purerpc's ``GRPCSocket._streams``."""
    h2_streams: int
    """h2's stream map."""
    read_buffers: int
    """purerpc's per-stream request read buffers."""
    closed_record: int
    """h2's record of how recent streams closed (for frames still in flight)."""


@dataclass(eq=False)
class _ConnectionState:
    calls: dict[int, trio.CancelScope] = field(default_factory=dict)
    socket: _Socket | None = None
    reader: trio.CancelScope = field(default_factory=trio.CancelScope)

    async def close(self) -> None:
        """GOAWAY, then stop reading: the writer flushes and the connection ends."""
        if self.socket is not None:
            await self.socket.goaway()
        self.reader.cancel()

    def reset(self, stream_id: int) -> None:
        scope = self.calls.get(stream_id)
        if scope is not None:
            scope.cancel()

    def tables(self) -> ConnectionTables:
        """The sizes of this connection's per-stream tables."""
        socket = self.socket
        if socket is None:
            return ConnectionTables(len(self.calls), 0, 0, 0, 0)
        connection = socket.connection
        h2c = connection.h2_connection
        return ConnectionTables(
            calls=len(self.calls),
            streams=len(socket._streams),
            h2_streams=len(h2c.streams),
            read_buffers=len(connection.message_read_buffers),
            closed_record=len(h2c._closed_streams),
        )


class _Dispatcher:
    """Runs the calls of every connection (see the module docstring)."""

    def __init__(
        self,
        services: dict[str, purerpc.Service],
        *,
        max_message_bytes: int,
        slow_consumer_timeout: float,
        accepting: Callable[[], bool],
    ) -> None:
        self.services = services
        self.max_message_bytes = max_message_bytes
        self.slow_consumer_timeout = slow_consumer_timeout
        self.accepting = accepting
        self.in_flight = 0
        self.idle = trio.Event()
        self.idle.set()
        self.connections: set[_ConnectionState] = set()
        self.all_closed = trio.Event()
        self.all_closed.set()

    async def connection(self, sock: anyio.abc.SocketStream) -> None:
        """Serve one client connection until it closes (or we are cancelled)."""
        state = _ConnectionState()
        config = GRPCConfiguration(client_side=False, max_message_length=self.max_message_bytes)
        if not self.connections:
            self.all_closed = trio.Event()
        self.connections.add(state)
        try:
            async with _Socket(config, sock, state.reset) as grpc_socket:
                state.socket = grpc_socket
                async with trio.open_nursery() as nursery:
                    with state.reader:
                        async for stream in grpc_socket.listen():
                            nursery.start_soon(self._run_call, state, stream)
                    # The peer closed the connection (or we stopped reading, on
                    # drain): its calls can send nothing more.
                    nursery.cancel_scope.cancel()
            # Leaving the socket lets its writer flush what is queued, then close.
        except _PEER_GONE as error:
            log.debug("grpc connection closed: %r", error)
        except Exception as error:
            if _peer_gone(error):  # anyio's task group wraps the peer's disconnect
                log.debug("grpc connection closed: %r", error)
            else:
                log.exception("grpc connection failed")
        finally:
            self.connections.discard(state)
            if not self.connections:
                self.all_closed.set()
            with trio.CancelScope(shield=True):
                await sock.aclose()

    async def _run_call(self, state: _ConnectionState, stream: GRPCProtoStream) -> None:
        self.in_flight += 1
        self.idle = trio.Event() if self.in_flight == 1 else self.idle
        scope = trio.CancelScope()
        state.calls[stream.stream_id] = scope
        try:
            with scope:
                await self._call(stream)
        except _PEER_GONE as error:
            log.debug("grpc call ended by the peer: %r", error)
        except Exception:
            log.exception("grpc call failed")
        finally:
            state.calls.pop(stream.stream_id, None)
            if state.socket is not None:
                state.socket.forget(stream.stream_id)
            self.in_flight -= 1
            if self.in_flight == 0:
                self.idle.set()

    async def _call(self, stream: GRPCProtoStream) -> None:
        await stream.start_response()
        event = await stream.receive_event()
        if not isinstance(event, RequestReceived):
            await stream.close(_status(Code.INTERNAL, "expected request headers"))
            return
        service = self.services.get(event.service_name)
        bound = service.methods.get(event.method_name) if service is not None else None
        if bound is None:
            path = f"/{event.service_name}/{event.method_name}"[:200]
            await stream.close(_status(Code.UNIMPLEMENTED, f"unknown method {path}"))
            return
        if not self.accepting():
            await stream.close(_status(Code.UNAVAILABLE, "server is shutting down"))
            return
        timeout = event.timeout.total_seconds() if event.timeout is not None else None
        call = GrpcCall(event.service_name, event.method_name, timeout)
        stream.expect_message_type(_RawRequest)
        status = _status(Code.OK)
        with trio.move_on_after(timeout if timeout is not None else float("inf")) as deadline:
            try:
                await self._invoke(stream, bound, call)
            except RpcError as error:
                status = _status(error.code, error.message)
            except _PEER_GONE:
                raise
            except Exception:
                # A bug in a handler: the client gets INTERNAL at once, not a hang
                # until its deadline; the details go to the log, not to the client.
                log.exception("grpc handler failed", extra={"method": call.method})
                status = _status(Code.INTERNAL, "internal error")
        if deadline.cancelled_caught:
            status = _status(Code.DEADLINE_EXCEEDED, "deadline exceeded")
        await stream.close(status)

    def _oversized(self) -> RpcError:
        return RpcError(
            Code.RESOURCE_EXHAUSTED, f"request message larger than {self.max_message_bytes} bytes"
        )

    async def _read_request(self, stream: GRPCProtoStream, request_type: Any) -> Any:
        data: bytes | None = None
        while True:
            event = await stream.receive_event()
            if isinstance(event, _Oversized):
                raise self._oversized()
            if isinstance(event, RequestEnded):
                break
            if isinstance(event, MessageReceived):
                if data is not None:
                    raise RpcError(Code.INVALID_ARGUMENT, "expected exactly one request message")
                data = event.data.data
        if data is None:
            raise RpcError(Code.INVALID_ARGUMENT, "expected exactly one request message, got none")
        return _parse(request_type, data)

    async def _requests(self, stream: GRPCProtoStream, request_type: Any) -> AsyncIterator[Any]:
        """A client stream's messages, parsed, until the client half-closes."""
        while True:
            event = await stream.receive_event()
            if isinstance(event, _Oversized):
                raise self._oversized()
            if isinstance(event, RequestEnded):
                return
            if isinstance(event, MessageReceived):
                yield _parse(request_type, event.data.data)

    async def _invoke(self, stream: GRPCProtoStream, bound: Any, call: GrpcCall) -> None:
        signature = bound.signature
        cardinality = signature.cardinality
        if cardinality is Cardinality.UNARY_UNARY:
            request = await self._read_request(stream, signature.request_type)
            response = await bound.method_fn(request, call)
            await stream.send_message(response)
            return
        lane = call.lane = Lane(stream, stream._socket)
        if cardinality is Cardinality.UNARY_STREAM:
            request = await self._read_request(stream, signature.request_type)
            messages = bound.method_fn(request, call)
            if inspect.iscoroutine(messages):  # it writes through call.lane itself
                await messages
                return
        elif cardinality is Cardinality.STREAM_STREAM:
            messages = bound.method_fn(self._requests(stream, signature.request_type), call)
        else:
            raise RpcError(Code.UNIMPLEMENTED, "client streaming is not supported")
        async with aclosing(messages):
            async for message in messages:
                data = [grpc_message(message.SerializeToString())]
                try:
                    await write_within(partial(lane.write, data), self.slow_consumer_timeout)
                except SlowConsumer as slow:
                    raise slow_consumer_error(slow) from None


def slow_consumer_error(slow: SlowConsumer) -> RpcError:
    """How gRPC says that a stream ended because its client was too slow."""
    return RpcError(
        Code.RESOURCE_EXHAUSTED,
        f"{slow} (read faster, or ask for fewer updates with update_interval_ms)",
    )


def _parse(request_type: Any, data: bytes) -> Any:
    try:
        return request_type.FromString(data)
    except DecodeError:
        raise RpcError(
            Code.INVALID_ARGUMENT,
            f"malformed {request_type.DESCRIPTOR.full_name} message ({len(data)} bytes)",
        ) from None


def _peer_gone(error: BaseException) -> bool:
    """Whether ``error`` (possibly a group) only says that the peer went away."""
    if isinstance(error, BaseExceptionGroup):
        return error.split(_PEER_GONE)[1] is None
    return isinstance(error, _PEER_GONE)


class GrpcServer(purerpc.Server):
    """purerpc's server bound to ``host`` (no SO_REUSEPORT) with a graceful drain.

    :meth:`serve` reports the bound port through ``task_status`` and returns
    once ``stop_accepting`` has fired and every call has ended.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_message_bytes: int,
        slow_consumer_timeout: float,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(port=port)
        self.host = host
        self.reuse_port = reuse_port
        self._accepting = True
        self._dispatcher_options = {
            "max_message_bytes": max_message_bytes,
            "slow_consumer_timeout": slow_consumer_timeout,
        }
        self.dispatcher: _Dispatcher | None = None

    async def serve(
        self,
        stop_accepting: Callable[[], Awaitable[object]],
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until ``stop_accepting()`` returns, then drain and return."""
        async with AsyncExitStack() as stack:
            # purerpc keeps each service behind an async context manager.
            services = {
                name: await stack.enter_async_context(manager)
                for name, manager in self.services.items()
            }
            await self._serve(services, stop_accepting, task_status)

    async def _serve(
        self,
        services: dict[str, purerpc.Service],
        stop_accepting: Callable[[], Awaitable[object]],
        task_status: trio.TaskStatus[int],
    ) -> None:
        dispatcher = self.dispatcher = _Dispatcher(
            services, accepting=lambda: self._accepting, **self._dispatcher_options
        )
        listener = await anyio.create_tcp_listener(
            local_host=self.host or None, local_port=self.port, reuse_port=self.reuse_port
        )
        self.port = listener.listeners[0].extra(anyio.abc.SocketAttribute.local_port)
        async with trio.open_nursery() as connections:
            async with listener:
                for one in listener.listeners:  # one per address family
                    connections.start_soon(self._accept, one, connections, dispatcher)
                task_status.started(self.port)
                await stop_accepting()
                self._accepting = False
            # Open streams were told to end by the drain; wait for every call.
            await dispatcher.idle.wait()
            for state in list(dispatcher.connections):
                await state.close()
            # The writers flush the last trailers and GOAWAY frames; a peer
            # that does not read gets a bounded grace.
            with trio.move_on_after(_FLUSH_GRACE_S):
                await dispatcher.all_closed.wait()
            connections.cancel_scope.cancel()

    def connection_tables(self) -> list[ConnectionTables]:
        """The per-stream tables of every open connection (diagnostics and tests)."""
        if self.dispatcher is None:
            return []
        return [state.tables() for state in self.dispatcher.connections]

    async def serve_async(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """purerpc's entry point: serve forever (no drain)."""
        await self.serve(trio.sleep_forever, task_status=task_status)

    @staticmethod
    async def _accept(
        listener: anyio.abc.SocketListener,
        nursery: trio.Nursery,
        dispatcher: _Dispatcher,
    ) -> None:
        while True:
            try:
                sock = await listener.accept()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            except OSError as error:  # e.g. EMFILE: back off instead of spinning
                log.warning("grpc accept failed: %s", error)
                await trio.sleep(0.1)
                continue
            nursery.start_soon(dispatcher.connection, sock)
