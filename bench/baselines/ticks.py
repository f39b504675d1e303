"""What both baselines share: the tick source (a random walk on an absolute cadence),
the ``listening`` announcement and the command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

from mdactors.settings import parse_duration

__all__ = ["WalkTick", "announce", "main", "paced_ticks", "random_walk"]


@dataclass(slots=True)
class WalkTick:
    """One tick of the walk: what both baselines encode."""

    symbol: str
    seq: int
    price: float
    ts_ns: int


def random_walk(symbol: str, seed: int = 7) -> Iterator[WalkTick]:
    """Endless ticks of ``symbol``; stamp them with ``time.time_ns()`` when taken."""
    rng = random.Random(f"{seed}:{symbol}")
    price, seq = 100.0, 0
    while True:
        seq += 1
        price *= 1.0 + rng.gauss(0.0, 1e-4)
        yield WalkTick(symbol, seq, round(price, 2), time.time_ns())


def announce(transport: str, port: int) -> None:
    """Log the ``listening`` event the harness waits for."""
    print(json.dumps({"event": "listening", "transport": transport, "port": port}), file=sys.stderr)
    sys.stderr.flush()


async def paced_ticks(symbol: str, interval: float) -> AsyncIterator[WalkTick]:
    """``symbol``'s ticks, one per ``interval`` on an absolute cadence (no drift)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time()
    for tick in random_walk(symbol):
        yield tick
        deadline += interval
        await asyncio.sleep(max(0.0, deadline - loop.time()))


def main(description: str, serve: Callable[[int, list[str], float], Awaitable[None]]) -> None:
    """Parse ``--port --symbols --interval`` and run ``serve(port, symbols, interval)``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--symbols", default="BTC/USD")
    parser.add_argument("--interval", default="100ms")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.symbols.split(","), parse_duration(args.interval)))
