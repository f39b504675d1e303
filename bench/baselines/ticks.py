"""The baselines' tick source: a random walk per symbol on an absolute cadence."""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["WalkTick", "announce", "random_walk"]


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
