"""One market process feeding the other workers of ``serve --workers N`` (no Redis).

The market process (``FEED_PUBLISH=<socket path>``) runs the actors as usual
and serves every tick on a Unix socket (:class:`FeedPublisher`). A worker
(``FEED_SUBSCRIBE=<socket path>``) runs no actors: its :class:`FeedRelay`
publishes the ticks it reads into the worker's own topics, so its clients,
recorder, candles and books see the same ticks — same sequence numbers, same
prices — as the market process's.

Wire format: one line per tick, ``<symbol>\\t<JSON array>\\n`` (the array of
Redis history and the Redis cluster feed). A connection starts with each
symbol's latest tick. Each connection reads the topics through its own
cursors, so the topics' rings bound what a slow worker can hold back
(skipped ticks are counted); a worker whose write waits ``stall_timeout`` is
disconnected, reconnects and resumes from the latest ticks. An empty line
goes out after each :data:`HEARTBEAT_S` without ticks; a worker that reads
nothing for three of them takes the market process for hung and reconnects.

The feed has one writer, so a worker publishes every tick it reads, in
order — a republished tick (the stale-feed disruption) too — except a
connection's first tick of a symbol when the worker already has it. A
market process that restarted starts a new sequence, and so do its workers'
topics (logged).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
from collections.abc import Iterable

import trio

from mdactors.adapters.redis_history import decode_tick, encode_tick
from mdactors.domain.tick import Tick
from mdactors.engine.market import Market
from mdactors.engine.relay import relay_ticks
from mdactors.engine.subscription import StreamClosed, Subscription

__all__ = ["FeedPublisher", "FeedRelay", "decode_lines", "encode_lines"]

log = logging.getLogger("mdactors.feed")

MAX_LINE = 4_096
"""Longest line a worker accepts (a tick's line is ~200 bytes)."""
_BATCH = 1_024
"""Most ticks per symbol taken for one write."""
_RETRY_S = 0.1
HEARTBEAT_S = 1.0
"""Longest silence on the feed: an empty line goes out after it."""


def _remove(path: str) -> None:
    """Remove the socket file at ``path`` (nothing else: a file there is an error)."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)


def encode_lines(ticks: Iterable[Tick]) -> bytes:
    """The wire form of ``ticks``."""
    return "".join(f"{tick.symbol}\t{encode_tick(tick)}\n" for tick in ticks).encode()


def decode_lines(lines: Iterable[bytes]) -> tuple[list[Tick], int]:
    """The ticks of ``lines`` (without their newlines), and how many were malformed."""
    ticks, bad = [], 0
    for line in lines:
        if not line:
            continue  # a heartbeat
        symbol, _, raw = line.partition(b"\t")
        try:
            if len(line) > MAX_LINE:
                raise ValueError("line too long")
            tick = decode_tick(symbol.decode(), raw)
        except Exception:  # any garbage, deep nesting included, is one bad line
            bad += 1
            continue
        if type(tick.seq) is int and type(tick.ts_ns) is int and tick.seq > 0:
            ticks.append(tick)
        else:
            bad += 1
    return ticks, bad


class FeedPublisher:
    """Serves every tick of ``market`` on the Unix socket at ``path``."""

    def __init__(
        self,
        market: Market,
        path: str,
        *,
        stall_timeout: float = 5.0,
        heartbeat: float = HEARTBEAT_S,
    ) -> None:
        self.market = market
        self.path = path
        self.stall_timeout = stall_timeout
        self.heartbeat = heartbeat
        self.workers = 0
        self.skipped = 0

    def describe(self) -> dict[str, object]:
        """Readiness: the workers fed now and the ticks lagging ones skipped."""
        return {"status": "ok", "workers": self.workers, "skipped_ticks": self.skipped}

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept workers until cancelled."""
        _remove(self.path)  # left by a previous run
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            await sock.bind(self.path)
            sock.listen(64)
            listener = trio.SocketListener(sock)
            log.info("market feed published", extra={"event": "feed_publish", "path": self.path})
            async with trio.open_nursery() as nursery:
                task_status.started()
                while True:
                    stream = await listener.accept()
                    nursery.start_soon(self._serve, stream)
        finally:
            sock.close()
            _remove(self.path)

    async def _serve(self, stream: trio.SocketStream) -> None:
        topics = {key: actor.topic for key, actor in self.market.actors.items()}
        self.workers += 1
        try:
            async with stream:
                with Subscription(topics) as feed:
                    while True:
                        ticks = []
                        with trio.move_on_after(self.heartbeat):
                            await feed.wait()
                        for key, items, skipped in feed.take(_BATCH):
                            ticks += items
                            if skipped:
                                self.skipped += skipped
                                log.warning(
                                    "market feed: a worker fell behind; ticks skipped",
                                    extra={
                                        "event": "feed_skipped",
                                        "symbol": key,
                                        "count": skipped,
                                    },
                                )
                        with trio.move_on_after(self.stall_timeout) as stalled:
                            await stream.send_all(encode_lines(ticks) or b"\n")
                        if stalled.cancelled_caught:
                            log.warning("market feed: a worker stopped reading; disconnected")
                            return
        except (trio.BrokenResourceError, trio.ClosedResourceError, StreamClosed):
            pass  # the worker left, or the market closed
        finally:
            self.workers -= 1


class FeedRelay:
    """Publishes the ticks of the market process at ``path`` into ``market``'s topics."""

    def __init__(self, market: Market, path: str, *, heartbeat: float = HEARTBEAT_S) -> None:
        self.market = market
        self.path = path
        self.heartbeat = heartbeat
        self.connected = False
        self.lost = 0
        """Connections to the market process that ended (it stopped, or bad input)."""
        self.relayed = dict.fromkeys(market.symbols, 0)
        self.relay_lag = dict.fromkeys(market.symbols, 0.0)
        self.malformed = 0

    def describe(self) -> dict[str, object]:
        """Readiness: ``ok`` while connected to the market process."""
        return {
            "status": "ok" if self.connected else "degraded",
            "market_process": self.path,
            "connected": self.connected,
            "connections_lost": self.lost,
            "malformed_lines": self.malformed,
            "relay_lag_seconds": round(max(self.relay_lag.values(), default=0.0), 3),
        }

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read the feed until cancelled, reconnecting whenever it is lost."""
        task_status.started()
        waiting_logged = False
        while True:
            try:
                stream = await trio.open_unix_socket(self.path)
            except OSError:
                if not waiting_logged:
                    log.info("waiting for the market process", extra={"event": "feed_waiting"})
                    waiting_logged = True
                await trio.sleep(_RETRY_S)
                continue
            waiting_logged = False
            self.connected = True
            log.info("market feed connected", extra={"event": "feed_connected"})
            try:
                async with stream:
                    await self._read(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            finally:
                self.connected = False
                self.lost += 1
            log.warning("market feed lost: reconnecting", extra={"event": "feed_lost"})
            await trio.sleep(_RETRY_S)

    async def _read(self, stream: trio.SocketStream) -> None:
        pending = b""
        synced: set[str] = set()  # symbols whose first tick on this connection was seen
        while True:
            with trio.move_on_after(3 * self.heartbeat) as silent:
                data = await stream.receive_some(65_536)
            if silent.cancelled_caught:
                log.error("market feed: no heartbeat from the market process; reconnecting")
                return
            if not data:
                return
            *lines, pending = (pending + data).split(b"\n")
            if len(pending) > MAX_LINE:
                log.error("market feed: line too long; reconnecting")
                return
            ticks, bad = decode_lines(lines)
            self.malformed += bad
            fresh = [tick for tick in ticks if self._fresh(tick, synced)]
            relay_ticks(self.market, fresh, self.relayed, self.relay_lag, newer_only=False)

    def _fresh(self, tick: Tick, synced: set[str]) -> bool:
        """Whether to publish ``tick``: all but a connection's first tick of a symbol
        when this worker has that very tick already."""
        key = tick.symbol
        if key in synced or key not in self.relayed:
            return True  # relay_ticks ignores unknown symbols
        synced.add(key)
        latest = self.market.actor(key).latest
        if (latest.seq, latest.ts_ns) == (tick.seq, tick.ts_ns):
            return False
        if tick.seq < latest.seq:
            log.warning(
                "market feed: the market process restarted its sequence",
                extra={"event": "feed_sequence_reset", "symbol": key, "seq": tick.seq},
            )
        return True
