"""The sweep's PNG: latency percentiles and server CPU per message vs subscribers."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from pathlib import Path

__all__ = ["plot_sweep", "sweep_series"]

Row = dict[str, object]


def sweep_series(rows: Sequence[Row]) -> list[tuple[str, bool, list[Row]]]:
    """``(name, is_baseline, rows by subscribers)`` per series of ``rows``.

    A row's series is its ``label`` when it has one (``--label``), else its
    server, and its transport: ``"2 workers grpc"``, ``"baseline ws"``.
    """

    def series_of(row: Row) -> tuple[str, str, str]:
        return str(row["server"]), str(row.get("label") or row["server"]), str(row["transport"])

    ordered = sorted(rows, key=lambda row: (*series_of(row), row["subscribers"]))
    return [
        (f"{label} {transport}", server == "baseline", list(points))
        for (server, label, transport), points in groupby(ordered, key=series_of)
    ]


def plot_sweep(rows: Sequence[Row], path: Path, p99_bound_ms: float | None = None) -> Path:
    """Draw every series of ``rows`` (:func:`sweep_series`) on one chart; write ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency, cpu) = plt.subplots(1, 2, figsize=(13, 5))
    colours = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4)
    for name, baseline, points in sweep_series(rows):
        subscribers = [row["subscribers"] for row in points]
        # One colour per series; mdactors solid, baselines dashed; a marker per percentile.
        look = {"color": next(colours), "linestyle": "--" if baseline else "-"}
        for percentile, marker in (("p50", "o"), ("p99", "s"), ("p99.9", "^")):
            values = [row["latency_ms"][percentile] for row in points]  # type: ignore[index]
            latency.plot(subscribers, values, marker=marker, label=f"{name} {percentile}", **look)
        values = [row["server_cpu_us_per_msg"] for row in points]
        cpu.plot(subscribers, values, marker="o", label=name, **look)
    if p99_bound_ms is not None:
        latency.axhline(p99_bound_ms, color="grey", linewidth=0.8, label="p99 bound")
    latency.set(
        xscale="log",
        yscale="log",
        xlabel="subscribers",
        ylabel="publish → receive latency (ms)",
        title="Tick latency",
    )
    cpu.set(
        xscale="log",
        xlabel="subscribers",
        ylabel="server CPU µs per delivered message",
        title="Server CPU per message",
    )
    for axes in (latency, cpu):
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
