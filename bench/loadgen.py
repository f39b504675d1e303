"""Measure one load point: N subscribers of one transport against one server.

The parent process spreads the subscribers over worker processes
(:mod:`bench.worker`), lets them all connect, then opens a common
measurement window after a warm-up. Server CPU (``/proc/<pid>/stat``) and
RSS are sampled at the window's edges; the server's idle CPU (ticks,
candles, history with no subscriber) is measured first so the cost of
delivery can be told apart from the cost of the market.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

from bench.clients import WorkerSpec
from bench.machine import cpu_seconds, load_average, rss_bytes
from bench.servers import Server
from bench.stats import merge
from bench.worker import worker_main

__all__ = ["Load", "Workers", "measure"]

_SUBSCRIBERS_PER_WORKER = 500
_MAX_WORKERS = 4


@dataclass(frozen=True)
class Load:
    """The load of one point."""

    transport: str
    subscribers: int
    symbols: tuple[str, ...]
    interval: float
    duration: float
    warmup: float = 1.0
    idle: float = 1.0
    workers: int = 0
    """Load-generator processes; 0 = one per 500 subscribers, at most 4."""
    streams_per_connection: int = 1
    connect_timeout: float = 60.0

    def worker_count(self) -> int:
        """How many worker processes this load uses."""
        if self.workers:
            return max(1, min(self.workers, self.subscribers))
        return max(1, min(_MAX_WORKERS, math.ceil(self.subscribers / _SUBSCRIBERS_PER_WORKER)))


def _receive_all(conns: list[Connection], expected: str, timeout: float) -> list[tuple]:
    replies: dict[int, tuple] = {}
    deadline = time.monotonic() + timeout
    while len(replies) < len(conns):
        left = deadline - time.monotonic()
        pending = [conn for index, conn in enumerate(conns) if index not in replies]
        ready = wait(pending, timeout=max(0.0, left))
        if not ready:
            raise TimeoutError(f"workers did not report {expected!r} within {timeout:g} s")
        for conn in ready:
            reply = conn.recv()  # type: ignore[union-attr]
            if reply[0] != expected:
                raise RuntimeError(f"worker said {reply[0]!r}, expected {expected!r}")
            replies[conns.index(conn)] = reply  # type: ignore[arg-type]
    return [replies[index] for index in range(len(conns))]


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (index < total % parts) for index in range(parts)]


class Workers:
    """Load-generator processes, spawned ahead (they import while the server starts)."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        for _ in range(count):
            parent, child = context.Pipe()
            process = context.Process(target=worker_main, args=(child,), daemon=True)
            process.start()
            child.close()
            self.conns.append(parent)
            self.processes.append(process)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for conn in self.conns:
            conn.close()  # a worker still waiting for orders sees EOF and exits
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


def measure(server: Server, load: Load, workers: Workers) -> dict[str, object]:
    """Run ``load`` against ``server`` with ``workers``; one result row (docs/performance.md)."""
    pid = server.pid
    conns = workers.conns
    load_start = load_average()
    idle_cpu, idle_started = (cpu_seconds(pid) if pid else 0.0), time.monotonic()
    _receive_all(conns, "spawned", 60)
    time.sleep(max(0.0, load.idle - (time.monotonic() - idle_started)))
    idle_rate = (cpu_seconds(pid) - idle_cpu) / (time.monotonic() - idle_started) if pid else 0
    rss_idle = rss_bytes(pid) if pid else 0
    first = 0
    for conn, share in zip(conns, _split(load.subscribers, len(conns)), strict=True):
        spec = WorkerSpec(
            load.transport,
            server.host,
            server.ports[load.transport],
            load.symbols,
            share,
            first_client=first,
            streams_per_connection=load.streams_per_connection,
            connect_timeout=load.connect_timeout,
        )
        first += share
        conn.send(("connect", spec))
    ready = _receive_all(conns, "ready", load.connect_timeout + 30)
    start_ns = time.time_ns() + int(load.warmup * 1e9)
    end_ns = start_ns + int(load.duration * 1e9)
    for conn in conns:
        conn.send(("window", start_ns, end_ns))
    time.sleep(max(0.0, (start_ns - time.time_ns()) / 1e9))
    cpu_start = cpu_seconds(pid) if pid else 0.0
    time.sleep(max(0.0, (end_ns - time.time_ns()) / 1e9))
    cpu = cpu_seconds(pid) - cpu_start if pid else float("nan")
    rss = rss_bytes(pid) if pid else 0
    results = _receive_all(conns, "result", 60)
    observed = merge([tally for _, tally, _ in results])
    seconds = load.duration
    messages = observed.received
    rate = messages / seconds
    expected = load.subscribers * len(load.symbols) * seconds / load.interval
    net_cpu = cpu - idle_rate * seconds
    return {
        "server": server.name,
        "transport": load.transport,
        "subscribers": load.subscribers,
        "connected": sum(reply[1] for reply in ready),
        "symbols": len(load.symbols),
        "interval_s": load.interval,
        "duration_s": seconds,
        "workers": len(conns),
        "connect_all_s": round(max(reply[2] for reply in ready), 3),
        "connect_ms": observed.connect_ms,
        "messages": messages,
        "expected_messages": round(expected),
        "msgs_per_s": round(rate, 1),
        "delivered_ratio": round(messages / expected, 3) if expected else None,
        "latency_ms": observed.latency_ms,
        "gaps": observed.gaps,
        "dropped": observed.missed,
        "out_of_order": observed.out_of_order,
        "client_errors": observed.errors,
        "first_error": observed.first_error,
        "server_cpu_pct": round(100 * cpu / seconds, 1),
        "server_idle_cpu_pct": round(100 * idle_rate, 1),
        "server_cpu_us_per_msg": round(1e6 * cpu / messages, 2) if messages else None,
        "server_net_cpu_us_per_msg": round(1e6 * net_cpu / messages, 2) if messages else None,
        "msgs_per_server_cpu_s": round(messages / cpu, 1) if cpu > 0 else None,
        "server_rss_idle_mb": round(rss_idle / 2**20, 1),
        "server_rss_mb": round(rss / 2**20, 1),
        "rss_per_subscriber_kb": round((rss - rss_idle) / 1024 / load.subscribers, 1),
        "loadgen_cpu_pct": round(100 * sum(result[2] for result in results) / seconds, 1),
        "load_average": {"start": load_start, "end": load_average()},
        "cores": os.cpu_count(),
    }
