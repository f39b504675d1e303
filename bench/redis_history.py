"""Redis history throughput and the event-loop lag while it flushes.

Usage: ``python bench/redis_history.py [--seconds 3] [--rate 0] [--url redis://...]``.
Without ``--url`` it starts a private ``redis-server`` on a free port (no
persistence) and stops it afterwards. Ticks are handed to
:class:`~mdactors.adapters.redis_history.RedisHistory` exactly as the
recorder does (``record_ticks`` on the loop, batches of one symbol); the
store's writer task flushes them. ``--rate 0`` offers ticks as fast as the
writer takes them (the backlog is kept topped up), otherwise at that many
ticks/s. A probe task sleeps 1 ms in a loop; its oversleep is the loop lag.
Prints ticks/s persisted and the lag's p50/p99/max, then the same lag with
the writer idle, for comparison.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
import trio

from mdactors.adapters.breaker import CircuitBreaker
from mdactors.adapters.redis_history import RedisHistory, redis_client
from mdactors.domain.tick import Tick

SYMBOLS = ("BTC/USD", "ETH/USD", "ADA/USD", "SOL/USD", "DOT/USD", "USDT/USD")
CHUNK = 50  # ticks of one symbol per record_ticks call (a recorder batch)


@contextmanager
def private_redis() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found; pass --url")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", directory]
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 5
            while True:
                try:
                    redis.Redis(port=port).ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.kill()
            process.wait()


def make_ticks(count: int) -> list[list[Tick]]:
    """``count`` ticks as recorder-sized batches, round-robin over the symbols."""
    now = time.time_ns()
    batches = []
    for start in range(0, count, CHUNK):
        symbol = SYMBOLS[(start // CHUNK) % len(SYMBOLS)]
        batches.append(
            [
                Tick(symbol, seq, 100.0 + seq % 97 * 0.01, 99.99, 100.01, 0.5, now + seq * 1_000,
                     0.01, 0.0001, 101.0, 99.0, 1234.5)
                for seq in range(start, min(start + CHUNK, count))
            ]
        )  # fmt: skip
    return batches


async def probe_lag(lags: list[float], stop: trio.Event) -> None:
    """Sleep 1 ms at a time; record how late each wake-up is, in ms."""
    while not stop.is_set():
        started = trio.current_time()
        await trio.sleep(0.001)
        lags.append((trio.current_time() - started - 0.001) * 1_000)


async def offer(history: RedisHistory, batches: list[list[Tick]], rate: float) -> None:
    """Hand batches to the store at ``rate`` ticks/s, or as fast as it drains (0)."""
    started = trio.current_time()
    for index, batch in enumerate(batches):
        if rate:
            await trio.sleep_until(started + index * CHUNK / rate)
        else:
            # Top-up polling: the store announces nothing when its backlog shrinks.
            while history.backlog["tick"] > 20 * history.batch_size:  # noqa: ASYNC110
                await trio.sleep(0.0005)
        history.record_ticks(batch)


def summary(lags: list[float]) -> str:
    ordered = sorted(lags)
    p99 = ordered[int(len(ordered) * 0.99)]
    p50 = statistics.median(ordered)
    return f"lag p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {ordered[-1]:.2f} ms"


async def measure(url: str, seconds: float, rate: float) -> None:
    """Run the measurement against the Redis at ``url``."""
    history = RedisHistory(redis_client(url, 2.0), CircuitBreaker("redis"))
    history.warm_start(SYMBOLS)
    idle: list[float] = []
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe_lag, idle, stop)
        await trio.sleep(min(seconds, 1.0))
        stop.set()
    budget = int((rate or 400_000) * seconds)
    batches = make_ticks(budget)
    busy: list[float] = []
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(history.run)
        nursery.start_soon(probe_lag, busy, stop)
        started = trio.current_time()
        with trio.move_on_after(seconds):
            await offer(history, batches, rate)
        elapsed = trio.current_time() - started
        persisted = history.persisted["tick"]
        stop.set()
        nursery.cancel_scope.cancel()
    offered = "saturating" if not rate else f"offered {rate:,.0f}/s"
    print(
        f"redis history ({offered}, {len(SYMBOLS)} symbols, batch {history.batch_size}): "
        f"{persisted / elapsed:,.0f} ticks/s persisted over {elapsed:.1f} s"
    )
    print(f"  loop while flushing: {summary(busy)}")
    print(f"  loop, writer idle:   {summary(idle)}")


def main() -> None:
    """Parse arguments, provide a Redis, measure."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured time")
    parser.add_argument("--rate", type=float, default=0.0, help="ticks/s offered; 0 = saturate")
    parser.add_argument("--url", help="an existing Redis (its keys under market_data: are used)")
    args = parser.parse_args()
    if args.url:
        trio.run(measure, args.url, args.seconds, args.rate)
        return
    with private_redis() as url:
        trio.run(measure, url, args.seconds, args.rate)


if __name__ == "__main__":
    main()
