"""Cost of generating one tick: the price step alone and a whole actor step.

Usage: ``python bench/tick_generation.py [--seconds 2]``. Prints ns per tick
for each default model (``LiveProcess.advance``: innovations, market factor
and the model step) and for ``SymbolActor.step`` (plus quote, volume and the
Tick value), and the vectorised path generator's ns per point. Each figure is
the best of several rounds, so other load on the machine disturbs it less.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from collections.abc import Callable

import numpy as np

from mdactors.domain.innovations import MarketFactor
from mdactors.domain.model_config import default_model
from mdactors.domain.models import GBM, SECONDS_PER_YEAR, LiveProcess, PriceModel
from mdactors.domain.symbols import spec_for
from mdactors.engine.derived_actor import DerivedActor, perpetual_actor
from mdactors.engine.symbol_actor import SymbolActor


def _ns_per_call(step: Callable[[], object], seconds: float, chunk: int = 20_000) -> float:
    """The best ns per call over chunks run for ``seconds`` (the least disturbed chunk)."""
    best, deadline = math.inf, time.perf_counter() + seconds
    while time.perf_counter() < deadline or best == math.inf:
        started = time.perf_counter_ns()
        for _ in range(chunk):
            step()
        best = min(best, (time.perf_counter_ns() - started) / chunk)
    return best


def main(argv: list[str] | None = None) -> None:
    """Run every measurement for ``--seconds`` each and print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--points", type=int, default=1_000_000, help="vectorised path length")
    args = parser.parse_args(argv)
    dt = 1.0 / SECONDS_PER_YEAR
    models: dict[str, PriceModel] = {
        "gbm (BTC/USD vol)": GBM(0.5),
        "garch+jumps+t, factor (BTC/USD default)": default_model(spec_for("BTC/USD")),
        "ou (USDT/USD default)": default_model(spec_for("USDT/USD")),
    }
    for name, model in models.items():
        process = LiveProcess(model, 100.0, np.random.default_rng(1), MarketFactor(1))
        ns = _ns_per_call(lambda process=process: process.advance(dt), args.seconds)
        print(f"price step   {name:<42} {ns:8.0f} ns/tick")
    spec = spec_for("BTC/USD")
    actor = SymbolActor(
        spec, default_model(spec), 1.0, np.random.default_rng(1), factor=MarketFactor(1)
    )
    print(
        f"actor.step   {'BTC/USD default (price, quote, volume, Tick)':<42} "
        f"{_ns_per_call(actor.step, args.seconds):8.0f} ns/tick"
    )
    perp_spec = spec_for("BTC/USD-PERP")
    rngs = [np.random.default_rng(n) for n in (2, 3, 4)]
    # Exchange time advances one second a tick, as at the default interval: the
    # contract's windows (5 s premium samples, 30 s basis, 60 s liquidation move)
    # then hold what they hold live.
    seconds = itertools.count(1_767_225_600 * 10**9, 10**9)
    perp = perpetual_actor(
        perp_spec, actor, *rngs[:2], positions_rng=rngs[2], wall_clock=lambda: next(seconds)
    )
    # The same actor without its contract (funding, mark, open interest): what a
    # perpetual cost before them, measured in the same run.
    print(
        f"actor.step   {'BTC/USD-PERP price only (DerivedActor)':<42} "
        f"{_ns_per_call(lambda: DerivedActor.step(perp), args.seconds):8.0f} ns/tick"
    )
    print(
        f"actor.step   {'BTC/USD-PERP with funding, mark, OI':<42} "
        f"{_ns_per_call(perp.step, args.seconds):8.0f} ns/tick"
    )
    points, elapsed = args.points, math.inf
    for _ in range(3):
        started = time.perf_counter()
        default_model(spec).path(
            spec.seed_price,
            60.0 / SECONDS_PER_YEAR,
            points,
            np.random.default_rng(1),
            MarketFactor(1),
        )
        elapsed = min(elapsed, time.perf_counter() - started)
    print(
        f"vectorised   {f'BTC/USD default, {points:,} one-minute points':<42} "
        f"{elapsed * 1e9 / points:8.0f} ns/point ({elapsed:.2f} s)"
    )


if __name__ == "__main__":
    main()
