"""``python -m bench`` / ``mdactors bench``: run, sweep, plot, engine, ticks.

    python -m bench run --transport grpc --subscribers 1000 --interval 100ms --duration 20
    python -m bench run --transport grpc,ws,sse --quick
    python -m bench sweep --transport ws --steps 10,100,1000,2000,4000 --p99-bound 50
    python -m bench run --transport grpc --target 127.0.0.1:50051 --target-pid 1234
    python -m bench sweep --transport grpc --target 127.0.0.1:50051 --label "2 workers"
    python -m bench plot bench/results/A-sweep.json bench/results/B-sweep.json
    python -m bench engine --readers 100,1000
    python -m bench ticks
    python -m bench soak --duration 10m
    python -m bench soak --duration 3m --transports grpc --faults

Results (JSON, and the sweep's PNG) go to bench/results/; every document
carries the machine description, the git commit and the load average.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from bench.churn import TRANSPORTS as CHURN_TRANSPORTS
from bench.loadgen import Load
from bench.report import RESULTS_DIR, document, format_table, stamp, write_json
from bench.runner import run_point, servers_for, sweep
from bench.servers import running_server
from mdactors.settings import parse_duration

__all__ = ["main"]

TRANSPORTS = ("grpc", "ws", "sse", "connect", "grpc-web", "grpc-http")
#: Timing defaults: (normal, --quick); a flag given explicitly wins.
_TIMING = {"duration": (10.0, 1.5), "warmup": (2.0, 0.3), "idle": (1.0, 0.3)}


def _load_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--transport",
        default="grpc",
        help="grpc, ws, sse, connect, grpc-web, grpc-http or a comma list",
    )
    parser.add_argument("--symbols", default="BTC/USD", help="comma-separated symbols")
    parser.add_argument("--interval", default="100ms", help="tick interval per symbol")
    parser.add_argument("--duration", type=float, help="measured seconds per point (10)")
    parser.add_argument("--warmup", type=float, help="seconds between connect and window (2)")
    parser.add_argument("--idle", type=float, help="seconds of idle-CPU sampling first (1)")
    parser.add_argument("--workers", type=int, default=0, help="client processes (0 = auto)")
    parser.add_argument(
        "--streams-per-connection", type=int, default=1, help="gRPC streams sharing a connection"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline servers")
    parser.add_argument("--target", help="host:port of a running server (no server started)")
    parser.add_argument(
        "--target-pid", type=int, help="its pid, for CPU and RSS, children included (local only)"
    )
    parser.add_argument(
        "--label", help="name of the mdactors series in results and plots (e.g. '2 workers')"
    )
    parser.add_argument("--quick", action="store_true", help="short points (whole run < 30 s)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="one subscriber count, mdactors and baseline")
    _load_flags(run)
    run.add_argument("--subscribers", type=int, help="subscribers (default 100, quick 10)")
    run.add_argument("--json", action="store_true", help="print the JSON document")
    swept = commands.add_parser("sweep", help="10 → 100 → 1,000 … until p99 passes a bound")
    _load_flags(swept)
    swept.add_argument("--steps", help="subscriber counts (default 10,100,1000,2000,4000,8000)")
    swept.add_argument("--p99-bound", type=float, default=50.0, help="ms; stop past it")
    plot = commands.add_parser("plot", help="one chart from the rows of several result files")
    plot.add_argument("results", nargs="+", type=Path, help="run or sweep JSON documents")
    plot.add_argument("--p99-bound", type=float, help="ms; drawn as a line")
    plot.add_argument("--out", type=Path, default=RESULTS_DIR, help="where <time>-plot.png goes")
    engine = commands.add_parser("engine", help="Topic → in-process readers, deliveries/s")
    engine.add_argument("--readers", default="100,1000", help="comma-separated reader counts")
    engine.add_argument("--seconds", type=float, default=3.0)
    commands.add_parser("ticks", help="tick generation cost (bench/tick_generation.py)")
    soak = commands.add_parser("soak", help="churn every streaming transport for a long time")
    soak.add_argument("--duration", default="10m", help="how long (Go duration, default 10m)")
    soak.add_argument("--sample", default="30s", help="sampling window (default 30s)")
    soak.add_argument("--transports", default=",".join(CHURN_TRANSPORTS), help="comma list")
    soak.add_argument("--interval", default="100ms", help="tick interval")
    soak.add_argument("--grpc-channels", type=int, default=10, help="long-lived gRPC channels")
    soak.add_argument("--grpc-streams", type=int, default=150, help="concurrent gRPC streams")
    soak.add_argument("--concurrency", type=int, default=20, help="per other transport")
    soak.add_argument("--faults", action="store_true", help="kill Redis, fail the config service")
    soak.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    return parser


def _loads(args: argparse.Namespace) -> list[partial[Load]]:
    timing = {
        name: getattr(args, name) if getattr(args, name) is not None else defaults[args.quick]
        for name, defaults in _TIMING.items()
    }
    transports = args.transport.split(",")
    unknown = set(transports) - set(TRANSPORTS)
    if unknown:
        raise SystemExit(f"unknown transport(s) {sorted(unknown)}; use {', '.join(TRANSPORTS)}")
    return [
        partial(
            Load,
            transport,
            symbols=tuple(args.symbols.split(",")),
            interval=parse_duration(args.interval),
            workers=args.workers,
            streams_per_connection=args.streams_per_connection,
            **timing,
        )
        for transport in transports
    ]


def _target(args: argparse.Namespace, transport: str) -> partial | None:
    if not args.target:
        return None
    return partial(running_server, args.target, transport, args.target_pid)


def _run(args: argparse.Namespace) -> int:
    count = args.subscribers or (10 if args.quick else 100)
    rows = []
    for make in _loads(args):
        load = make(subscribers=count)
        for name in servers_for(load.transport, not args.no_baseline):
            print(f"… {name} {load.transport} {count} subscribers", file=sys.stderr, flush=True)
            rows.append(run_point(name, load, args.interval, _target(args, load.transport)))
    _label(rows, args.label)
    doc = document("run", _parameters(args), rows)
    path = write_json(doc, args.out)
    print(json.dumps(doc, indent=2, default=str) if args.json else format_table(rows))
    print(f"results: {path}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    default = "10,50" if args.quick else "10,100,1000,2000,4000,8000"
    steps = [int(part) for part in (args.steps or default).split(",")]
    rows = []
    for make in _loads(args):
        transport = make.args[0]
        rows += sweep(
            steps,
            servers_for(transport, not args.no_baseline),
            lambda count, make=make: make(subscribers=count),
            args.interval,
            args.p99_bound,
            _target(args, transport),
        )
    _label(rows, args.label)
    doc = document("sweep", {**_parameters(args), "steps": steps}, rows)
    path = write_json(doc, args.out)
    print(format_table(rows))
    print(f"results: {path}")
    try:
        from bench.plot import plot_sweep
    except ImportError:
        print("no plot: matplotlib is not installed (pip install -e '.[bench]')")
    else:
        print(f"plot: {plot_sweep(rows, path.with_suffix('.png'), args.p99_bound)}")
    return 0


def _label(rows: list[dict[str, object]], label: str | None) -> None:
    """Name the mdactors rows' series ``label`` (the ``server`` field stays, for ratios)."""
    if label:
        for row in rows:
            if row["server"] == "mdactors":
                row["label"] = label


def _plot(args: argparse.Namespace) -> int:
    from bench.plot import plot_sweep

    rows = []
    for path in args.results:
        try:
            rows += json.loads(path.read_text())["rows"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise SystemExit(f"{path}: not a bench result document ({error})") from None
    if not rows:
        raise SystemExit("no rows in the given results")
    print(f"plot: {plot_sweep(rows, args.out / f'{stamp()}-plot.png', args.p99_bound)}")
    return 0


def _parameters(args: argparse.Namespace) -> dict[str, object]:
    return {
        key: value
        for key, value in vars(args).items()
        if key not in ("out", "json") and value is not None
    }


def _soak(args: argparse.Namespace) -> int:
    from bench.soak import SoakPlan, run_soak

    transports = tuple(args.transports.split(","))
    unknown = set(transports) - set(CHURN_TRANSPORTS)
    if unknown:
        raise SystemExit(f"unknown transport(s) {sorted(unknown)}; use {CHURN_TRANSPORTS}")
    plan = SoakPlan(
        transports,
        duration=parse_duration(args.duration),
        sample=parse_duration(args.sample),
        interval=args.interval,
        grpc_channels=args.grpc_channels,
        grpc_streams=args.grpc_streams,
        concurrency=args.concurrency,
        faults=args.faults,
    )
    result = run_soak(plan)
    doc = document("soak", _parameters(args), [])
    doc.update(result)
    del doc["rows"], doc["ratios"]
    path = write_json(doc, args.out)
    print(f"results: {path}")
    try:
        from bench.plot import plot_soak
    except ImportError:
        print("no plot: matplotlib is not installed (pip install -e '.[bench]')")
    else:
        print(f"plot: {plot_soak(doc, path.with_suffix('.png'))}")
    print(result["verdict"]["line"])  # type: ignore[index]
    return 0


def _engine(args: argparse.Namespace) -> int:
    from bench.engine import engine_deliveries

    for readers in (int(part) for part in args.readers.split(",")):
        for kind in ("subscription", "reader", "fanout"):
            print(json.dumps(engine_deliveries(readers, args.seconds, kind)))
    return 0


def _ticks(argv: Sequence[str]) -> int:
    from bench.tick_generation import main as ticks_main

    ticks_main(list(argv))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m bench`` and ``mdactors bench``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["ticks"]:
        return _ticks(argv[1:])
    args = _parser().parse_args(argv)
    commands = {"run": _run, "sweep": _sweep, "plot": _plot, "engine": _engine, "soak": _soak}
    return commands[args.command](args)
