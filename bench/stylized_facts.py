"""Measure the stylized facts of the default models (the numbers in docs/realism.md).

Usage: ``python bench/stylized_facts.py [--seeds 20] [--minutes 120000]``.
For each seed, makes ``--minutes`` one-minute bars (from a Monday 00:00 UTC)
of the default BTC/USD model, a plain GBM at the same volatility and the
USDT/USD model, with the same vectorised generator as the start-up backfill
(one step a minute: the price model, its rhythm and its volume), and prints
the median and range over seeds of every statistic.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from mdactors.domain.backfill import minute_history
from mdactors.domain.innovations import MarketFactor
from mdactors.domain.model_config import default_model
from mdactors.domain.models import GBM, SECONDS_PER_YEAR, PriceModel
from mdactors.domain.stylized import (
    acf,
    aggregate,
    check_realism,
    hourly_ratio,
    log_returns,
    memory_decay,
    skewness,
    volume_volatility_correlation,
)
from mdactors.domain.symbols import SymbolSpec, spec_for

MINUTE = 60.0 / SECONDS_PER_YEAR
MONDAY_MS = 1_767_571_200_000  # 2026-01-05 00:00 UTC


def _facts(spec: SymbolSpec, model: PriceModel, seed: int, minutes: int) -> dict[str, float]:
    end_ms = MONDAY_MS + minutes * 60_000
    bars = minute_history(
        spec, model, 1.0, end_ms, minutes, np.random.default_rng(seed), 1, MarketFactor(seed)
    )
    prices = np.concatenate(([bars.open[0]], bars.close))
    returns = log_returns(prices)
    report = check_realism(returns)
    daily = aggregate(returns, 1_440)
    hours = (np.arange(minutes) // 60) % 24
    ratio, slope = memory_decay(returns)
    facts = {
        "annual vol": float(np.std(returns) * math.sqrt(365 * 1_440)),
        "daily σ (bp)": float(np.std(daily) * 1e4),
        "max |p/p0 − 1| (bp)": float(np.max(np.abs(prices / prices[0] - 1.0)) * 1e4),
        "hourly ACF(r,1)": float(acf(aggregate(returns, 60), 1)[0]),
        "hill α (1 %)": report.hill_alpha,
        "max |ACF(r,k)|/SE k≤10": float(
            np.max(np.abs(report.acf_returns[:10]) / report.acf_se[:10])
        ),
        "passes all checks": float(report.realistic),
    }
    facts.update({f"excess kurtosis {k}m": v for k, v in report.kurtosis.items()})
    facts.update({f"ACF(|r|,{k})": float(report.acf_abs[k - 1]) for k in (1, 5, 10, 20)})
    facts.update(
        {
            "corr(V,|r|) 1m": volume_volatility_correlation(bars.volume, returns),
            "ACF(|r|,1440)/ACF(|r|,1)": ratio,
            "log-log slope 10..1440": slope,
            "hourly σ busiest/quietest": hourly_ratio(returns, hours, rms=True),
            "hourly V busiest/quietest": hourly_ratio(bars.volume, hours),
            "volume / table volume": float(np.mean(bars.volume) * 1_440 / spec.daily_volume),
        }
    )
    facts.update({f"skew {k}m": skewness(aggregate(returns, k)) for k in (1, 5, 15, 60)})
    return facts


def main() -> None:
    """Print median [min, max] of each statistic over the seeds, per model."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--minutes", type=int, default=120_000)
    args = parser.parse_args()
    btc_spec, usdt_spec = spec_for("BTC/USD"), spec_for("USDT/USD")
    models = {
        "BTC/USD default": (btc_spec, default_model(btc_spec)),
        "GBM σ=0.5": (btc_spec, GBM(0.5)),
        "USDT/USD default": (usdt_spec, default_model(usdt_spec)),
    }
    for name, (spec, model) in models.items():
        runs = [_facts(spec, model, seed, args.minutes) for seed in range(args.seeds)]
        print(f"## {name} ({args.seeds} seeds × {args.minutes} one-minute returns)")
        for key in runs[0]:
            values = np.array([run[key] for run in runs])
            if key == "passes all checks":
                print(f"  {key:<24} in {int(values.sum())} of {len(values)} seeds")
                continue
            print(
                f"  {key:<24} median {np.median(values):9.4f}  "
                f"[{values.min():9.4f}, {values.max():9.4f}]"
            )
    btc, eth = default_model(spec_for("BTC/USD")), default_model(spec_for("ETH/USD"))
    pair = [
        np.corrcoef(
            log_returns(
                btc.path(1.0, MINUTE, args.minutes, np.random.default_rng(s), MarketFactor(s))
            ),
            log_returns(
                eth.path(
                    1.0, MINUTE, args.minutes, np.random.default_rng(s + 1000), MarketFactor(s)
                )
            ),
        )[0, 1]
        for s in range(min(args.seeds, 5))
    ]
    print(f"## BTC/USD–ETH/USD correlation of one-minute returns: {np.median(pair):.3f}")


if __name__ == "__main__":
    main()
