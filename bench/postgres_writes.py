"""PostgreSQL persistence throughput and the event-loop lag while it writes.

Usage: ``python -m bench.postgres_writes [--seconds 5] [--rate 1000] [--sample 0]
[--url postgresql://postgres@127.0.0.1:5432/test]``.

A private database is created on the server of ``--url`` and dropped
afterwards. Ticks are offered to
:class:`~mdactors.adapters.postgres_history.PersistedHistory` exactly as the
recorder does (``record_ticks`` on the loop, one symbol per call), round-robin
over the default symbols, at ``--rate`` ticks/s (``0`` = as fast as the writer
drains); ``--sample`` is ``PRICE_FEED_SAMPLE_INTERVAL`` in seconds (``0`` =
every tick becomes a ``price_feeds`` row). The store's writer task flushes
them (multi-row upserts, one transaction per batch, in a worker thread). A
probe task sleeps 1 ms in a loop; its oversleep is the loop lag. Prints rows/s
persisted and the lag's p50/p99/max, then the same lag with the writer idle.
"""

from __future__ import annotations

import argparse
import secrets
import time

import psycopg
import trio

from bench.redis_history import probe_lag, summary
from mdactors.adapters.breaker import CircuitBreaker
from mdactors.adapters.history import MemoryHistory
from mdactors.adapters.postgres_history import PersistedHistory
from mdactors.adapters.postgres_store import PostgresStore, postgres_pool
from mdactors.domain.symbols import spec_for
from mdactors.domain.tick import Tick

SYMBOLS = ("BTC/USD", "ETH/USD", "ADA/USD", "SOL/USD", "DOT/USD", "USDT/USD", "BTC/ETH")
_GROUP = 10  # ticks offered per wake-up at a fixed rate


def _tick(symbol: str, seq: int, ts_ns: int) -> Tick:
    spec = spec_for(symbol)
    price = round(spec.seed_price * (1 + (seq % 101 - 50) * 1e-5), spec.price_decimals)
    step = spec.tick_size
    return Tick(symbol, seq, price, price - step, price + step, 0.5, ts_ns, step, 1e-5,
                price * 1.01, price * 0.99, seq * 0.5)  # fmt: skip


async def offer(history: PersistedHistory, store: PostgresStore, rate: float) -> int:
    """Offer ticks until cancelled; returns how many were offered."""
    offered = 0
    started = trio.current_time()
    while True:
        if rate:
            await trio.sleep_until(started + offered / rate)
        else:
            # Top-up polling: the store announces nothing when its backlog shrinks.
            while store.backlog["price_feeds"] > 20_000:  # noqa: ASYNC110
                await trio.sleep(0.0005)
            await trio.lowlevel.checkpoint()
        now = time.time_ns()
        for index in range(_GROUP):
            symbol = SYMBOLS[(offered + index) % len(SYMBOLS)]
            history.record_ticks([_tick(symbol, offered + index, now + index)])
        offered += _GROUP


async def measure(url: str, seconds: float, rate: float, sample: float) -> None:
    """Run the measurement against the database at ``url``."""
    store = PostgresStore(
        postgres_pool(url, 4, 5.0), CircuitBreaker("postgres"), schema="market_data"
    )
    history = PersistedHistory(MemoryHistory(100_000), store, sample, lambda key: 1000.0)
    idle: list[float] = []
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe_lag, idle, stop)
        await trio.sleep(min(seconds, 1.0))
        stop.set()
    busy: list[float] = []
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        with trio.fail_after(10):
            while not store.up:  # noqa: ASYNC110 - the schema is made in the writer's thread
                await trio.sleep(0.01)
        nursery.start_soon(probe_lag, busy, stop)
        started = trio.current_time()
        before = store.persisted["price_feeds"]
        with trio.move_on_after(seconds):
            await offer(history, store, rate)
        elapsed = trio.current_time() - started
        persisted = store.persisted["price_feeds"] - before
        stop.set()
        nursery.cancel_scope.cancel()
    offered = "saturating" if not rate else f"offered {rate:,.0f} ticks/s"
    print(
        f"postgres price_feeds ({offered}, {len(SYMBOLS)} symbols, sample {sample:g} s): "
        f"{persisted / elapsed:,.0f} rows/s persisted over {elapsed:.1f} s, "
        f"backlog left {store.backlog['price_feeds']}, dropped {store.dropped['price_feeds']}"
    )
    print(f"  loop while writing: {summary(busy)}")
    print(f"  loop, writer idle:  {summary(idle)}")


def main() -> None:
    """Parse arguments, make a private database, measure, drop it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time")
    parser.add_argument("--rate", type=float, default=1000.0, help="ticks/s; 0 = saturate")
    parser.add_argument("--sample", type=float, default=0.0, help="PRICE_FEED_SAMPLE_INTERVAL")
    parser.add_argument(
        "--url", default="postgresql://postgres@127.0.0.1:5432/test", help="server to use"
    )
    args = parser.parse_args()
    name = f"mdactors_bench_{secrets.token_hex(4)}"
    with psycopg.connect(args.url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = args.url.rsplit("/", 1)[0] + f"/{name}"
            trio.run(measure, url, args.seconds, args.rate, args.sample)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
