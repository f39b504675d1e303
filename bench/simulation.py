"""Cost of GenerateSimulation's maths: each simulation kind over N points.

Usage: ``python bench/simulation.py [--points 1000000] [--rounds 5]``. For
every kind, prints the best-of-rounds time to simulate ``--points`` bars
(:func:`mdactors.domain.simulation.simulate`), to compute the similarity
metrics against the reference, and to encode both series as PricePoints.
The reference is a one-minute path of the default BTC/USD model.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from mdactors.api.rpc.simulation_codec import price_points
from mdactors.domain.model_config import default_model
from mdactors.domain.reference import model_bars
from mdactors.domain.similarity import similarity
from mdactors.domain.simulation import SimulationKind, SimulationParams, simulate
from mdactors.domain.symbols import spec_for

_START_NS = 1_700_000_000 * 10**9
_MINUTE_NS = 60 * 10**9


def _best(run: Callable[[], object], rounds: int) -> float:
    """The fastest of ``rounds`` runs, in seconds."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    """Measure every kind and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=1_000_000, help="bars per series")
    parser.add_argument("--rounds", type=int, default=5, help="runs per measurement (best kept)")
    args = parser.parse_args()
    spec = spec_for("BTC/USD")
    rng = np.random.default_rng(1)
    reference = model_bars(
        default_model(spec), spec, spec.seed_price, _START_NS, _MINUTE_NS, args.points, rng
    )
    params = SimulationParams()
    print(f"{args.points} points, best of {args.rounds}")
    for kind in SimulationKind:

        def run(kind: SimulationKind = kind) -> object:
            return simulate(kind, reference, params, np.random.default_rng(2), fallback_sigma=1e-3)

        simulated = simulate(kind, reference, params, rng, fallback_sigma=1e-3)
        simulate_s = _best(run, args.rounds)
        metrics_s = _best(lambda s=simulated: similarity(reference.prices(), s.prices()), 1)
        encode_s = _best(lambda s=simulated: price_points(3, s), 1)
        print(
            f"{kind.name:<24} simulate {simulate_s * 1e3:8.1f} ms   "
            f"metrics {metrics_s * 1e3:7.1f} ms   encode {encode_s * 1e3:7.1f} ms"
        )


if __name__ == "__main__":
    main()
