"""Run load points against mdactors and the baselines, one fresh server per point."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from bench.loadgen import Load, Workers, measure
from bench.servers import BASELINES, Server, start_baseline, start_mdactors

__all__ = ["Progress", "run_point", "sweep"]


def run_point(
    server_name: str, load: Load, interval: str, target: Callable[[], Server] | None = None
) -> dict[str, object]:
    """Measure ``load`` against a fresh ``mdactors`` or ``baseline`` server (or ``target``)."""
    symbols = list(load.symbols)
    with Workers(load.worker_count()) as workers:  # they import while the server starts
        if server_name == "baseline":
            server = start_baseline(load.transport, symbols, interval)
        elif target is not None:
            server = target()
        else:
            server = start_mdactors(symbols, interval)
        with server:
            return measure(server, load, workers)


def servers_for(transport: str, baseline: bool) -> list[str]:
    """mdactors, then the transport's baseline when there is one and it is wanted."""
    return ["mdactors", "baseline"] if baseline and transport in BASELINES else ["mdactors"]


class Progress:
    """A one-line progress bar on stderr (a line per step when not a terminal)."""

    def __init__(self, total: int, width: int = 30) -> None:
        self.total = max(1, total)
        self.done = 0
        self.width = width

    def show(self, label: str) -> None:
        """Draw the bar with ``label`` (the step about to run)."""
        filled = round(self.width * self.done / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        line = f"[{bar}] {self.done}/{self.total} {label}"
        if sys.stderr.isatty():
            print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def step(self) -> None:
        """One step finished."""
        self.done += 1

    def close(self) -> None:
        """End the bar's line."""
        self.show("done")
        if sys.stderr.isatty():
            print(file=sys.stderr)


def sweep(
    steps: Sequence[int],
    servers: Sequence[str],
    make_load: Callable[[int], Load],
    interval: str,
    p99_bound_ms: float,
    target: Callable[[], Server] | None = None,
) -> list[dict[str, object]]:
    """Each server at each subscriber count until its p99 passes the bound (or clients fail)."""
    rows: list[dict[str, object]] = []
    running = list(servers)
    progress = Progress(len(steps) * len(servers))
    for count in steps:
        for name in list(running):
            load = make_load(count)
            progress.show(f"{name} {load.transport} {count} subscribers")
            row = run_point(name, load, interval, target)
            rows.append(row)
            progress.step()
            p99 = row["latency_ms"]["p99"]  # type: ignore[index]
            if not p99 <= p99_bound_ms or row["connected"] < count:
                running.remove(name)
                progress.total -= len(steps) - steps.index(count) - 1
        if not running:
            break
    progress.close()
    return rows
