"""The order book's cost and its Binance ``@depth`` diff sizes, on an actor's own ticks.

Usage: ``python bench/order_book.py [--ticks 2000] [--seeds 1 2 3] [--depth 100]
[--interval 1]``. For each symbol and seed, steps a seeded
:class:`~mdactors.engine.symbol_actor.SymbolActor`
(default model, exchange time advancing ``--interval`` seconds a tick, from a
Monday 12:00 UTC) and builds the book of every tick as
:class:`~mdactors.engine.market_view.MarketView` does (the tick and the ones
before it), as the Binance feed asks for it. Prints, per symbol, the share of the book's levels a
``@depth`` diff carries (one diff per tick: the 1 s stream at 1 s ticks),
mean and 99th percentile over every seed's ticks, and the µs per book built
(``--depth`` levels a side, the view's per-tick cache missed).
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections import deque

import numpy as np

from mdactors.domain.book import WINDOW, OrderBook, book_at
from mdactors.domain.book_diff import book_diff
from mdactors.domain.innovations import MarketFactor
from mdactors.domain.model_config import default_model
from mdactors.domain.symbols import spec_for
from mdactors.engine.symbol_actor import SymbolActor

MONDAY_NOON_NS = 1_767_614_400 * 10**9  # 2026-01-05 12:00 UTC
SYMBOLS = ("BTC/USD", "ETH/USD", "USDT/USD")


def _share(old: OrderBook, new: OrderBook) -> float:
    """Levels in the diff from ``old`` to ``new`` over the levels ``new`` holds."""
    bids, asks = book_diff(old, new)
    return (len(bids) + len(asks)) / (len(new.bids) + len(new.asks))


def measure(
    key: str, ticks: int, depth: int, interval: float, seeds: list[int]
) -> tuple[float, float, float]:
    """``(mean diff share, p99 diff share, µs per book)`` of ``key``, ``ticks`` a seed."""
    shares: list[float] = []
    spent = 0
    for seed in seeds:
        spent += _run(key, ticks, depth, interval, seed, shares)
    return float(np.mean(shares)), float(np.percentile(shares, 99)), spent / len(shares) / 1e3


def _run(key: str, ticks: int, depth: int, interval: float, seed: int, shares: list[float]) -> int:
    """Step one seeded actor ``ticks`` times; append each diff's share; ns spent on books."""
    spec = spec_for(key)
    clock = itertools.count(MONDAY_NOON_NS, round(interval * 1e9))
    actor = SymbolActor(
        spec,
        default_model(spec),
        interval,
        np.random.default_rng(seed),
        factor=MarketFactor(seed),
        wall_clock=lambda: next(clock),
    )
    recent = deque([actor.latest], maxlen=WINDOW)
    previous = book_at(spec, actor.latest, depth)
    spent = 0
    for _ in range(ticks):
        tick = actor.step()
        started = time.perf_counter_ns()
        book = book_at(spec, tick, depth, recent)
        spent += time.perf_counter_ns() - started
        recent.append(tick)
        shares.append(_share(previous, book))
        previous = book
    return spent


def main(argv: list[str] | None = None) -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=2_000)
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--symbols", nargs="*", default=list(SYMBOLS))
    args = parser.parse_args(argv)
    print(f"{'symbol':<10} {'diff mean':>9} {'diff p99':>9} {'µs/book':>8}")
    for key in args.symbols:
        mean, p99, us = measure(key, args.ticks, args.depth, args.interval, args.seeds)
        print(f"{key:<10} {mean:9.1%} {p99:9.1%} {us:8.1f}")


if __name__ == "__main__":
    main()
