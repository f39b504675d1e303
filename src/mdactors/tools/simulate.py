"""``mdactors simulate``: write a model path, optionally with a scenario, as CSV or JSON lines.

Every symbol runs its price model (the calibrated default or a ``--model``
preset) on one shared market factor, so symbols are correlated as in the
live market; ``--scenario`` lays one StreamScenario shape over every symbol
(see :mod:`mdactors.domain.scenario_feed`). Rows are in time order, one per
symbol per step, in the tick format ``mdactors replay`` reads::

    timestamp,symbol,price,bid,ask,volume
    2026-01-01T00:00:01.000000Z,BTC/USD,43001.5,43000.12,43002.88,0.412

JSON lines carry the same fields. With ``--seed`` and ``--start`` the output is
repeatable (the daily rhythm follows the UTC hour of each row, so the start
time is part of the run).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Iterator
from typing import TextIO

import numpy as np

from mdactors.api.codec import rfc3339
from mdactors.domain.innovations import MarketFactor
from mdactors.domain.model_config import PRESETS, model_for
from mdactors.domain.scenario_feed import FeedStep, ScenarioFeed, ScenarioPlan, ScenarioType
from mdactors.domain.symbols import SymbolError, normalize_symbol, spec_for
from mdactors.settings import parse_duration
from mdactors.tools.progress import Progress

__all__ = ["FIELDS", "MAX_ROWS", "add_arguments", "run"]

FIELDS = ("timestamp", "symbol", "price", "bid", "ask", "volume")
MAX_ROWS = 50_000_000
_PROGRESS_ROWS = 200_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``simulate`` subcommand's options."""
    parser.add_argument("--symbols", default="BTC/USD", help="comma-separated (default BTC/USD)")
    parser.add_argument(
        "--model", choices=["default", *PRESETS], default="default", help="price model preset"
    )
    parser.add_argument(
        "--scenario",
        choices=[kind.name.lower() for kind in ScenarioType],
        help="a StreamScenario shape laid over every symbol",
    )
    parser.add_argument("--intensity", type=float, default=1.0, help="scenario intensity 0.1..2")
    parser.add_argument("--duration", default="1h", help="simulated span, Go syntax (1h, 90m)")
    parser.add_argument("--step", default="1s", help="time between rows per symbol (1s, 250ms)")
    parser.add_argument("--seed", type=int, default=None, help="seed for a repeatable run")
    parser.add_argument("--start", type=float, default=None, help="start, Unix seconds (now)")
    parser.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    parser.add_argument("--output", "-o", default="-", help="file to write (default stdout)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


class UsageError(ValueError):
    """A bad option; the message names it."""


def _feeds(args: argparse.Namespace, start_ns: int) -> tuple[list[tuple[str, ScenarioFeed]], int]:
    try:
        window, step = parse_duration(args.duration), parse_duration(args.step)
    except ValueError as error:
        raise UsageError(f"--duration/--step: {error}") from None
    if step <= 0 or window < step:
        raise UsageError("--step must be > 0 and no longer than --duration")
    if not 0.1 <= args.intensity <= 2.0:
        raise UsageError("--intensity must be within 0.1..2")
    try:
        keys = [normalize_symbol(raw) for raw in args.symbols.split(",") if raw.strip()]
    except SymbolError as error:
        raise UsageError(f"--symbols: {error}") from None
    if not keys:
        raise UsageError("--symbols names no symbol")
    kind = ScenarioType[args.scenario.upper()] if args.scenario else None
    plan = ScenarioPlan(kind, args.intensity, window, step)
    if plan.steps * len(keys) > MAX_ROWS:
        raise UsageError(f"that is over {MAX_ROWS} rows: use a longer --step or shorter --duration")
    seed = args.seed if args.seed is not None else int(np.random.SeedSequence().entropy % 2**32)
    factor = MarketFactor(seed, "simulate")
    feeds = []
    for index, key in enumerate(keys):
        spec = spec_for(key)
        config = {key: {"model": args.model}} if args.model != "default" else None
        rng = np.random.default_rng([seed, index])
        model = model_for(spec, config)
        feed = ScenarioFeed(plan, spec, model, spec.seed_price, rng, factor, start_ns)
        feeds.append((key, feed))
    return feeds, plan.steps


def _rows(
    feeds: list[tuple[str, ScenarioFeed]], start_ns: int
) -> Iterator[tuple[str, str, FeedStep]]:
    """``(timestamp, symbol, step)`` in time order, every symbol at each step."""
    iterators = [(key, iter(feed)) for key, feed in feeds]
    for steps in zip(*(iterator for _, iterator in iterators), strict=True):
        for (key, _), step in zip(iterators, steps, strict=True):
            yield rfc3339(start_ns + round(step.t * 1e9)), key, step


def _write(
    feeds: list[tuple[str, ScenarioFeed]],
    steps: int,
    start_ns: int,
    args: argparse.Namespace,
    out: TextIO,
) -> int:
    total = steps * len(feeds)
    show = not args.no_progress and total >= _PROGRESS_ROWS and sys.stderr.isatty()
    progress = Progress(total, sys.stderr, enabled=show)
    writer = csv.writer(out, lineterminator="\n") if args.format == "csv" else None
    if writer is not None:
        writer.writerow(FIELDS)
    for count, (stamp, key, step) in enumerate(_rows(feeds, start_ns), start=1):
        values = (stamp, key, step.price, step.bid, step.ask, round(step.volume, 8))
        if writer is not None:
            writer.writerow(values)
        else:
            out.write(json.dumps(dict(zip(FIELDS, values, strict=True))) + "\n")
        if count % 10_000 == 0:
            progress.update(count)
    progress.close()
    return total


def run(args: argparse.Namespace) -> int:
    """Run ``simulate``; exit code 0, or 2 for a bad option."""
    start_ns = round((args.start if args.start is not None else time.time()) * 1e9)
    try:
        feeds, steps = _feeds(args, start_ns)
    except UsageError as error:
        print(f"mdactors simulate: {error}", file=sys.stderr)
        return 2
    if args.output == "-":
        try:
            _write(feeds, steps, start_ns, args, sys.stdout)
        except BrokenPipeError:  # e.g. piped into head: the reader has what it wanted
            sys.stdout = None  # type: ignore[assignment]  # no flush error at exit
    else:
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            _write(feeds, steps, start_ns, args, out)
    return 0
