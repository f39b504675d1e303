"""The sweep's PNG: latency percentiles and server CPU per message vs subscribers."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from pathlib import Path

__all__ = ["plot_sweep"]


def plot_sweep(
    rows: Sequence[dict[str, object]], path: Path, p99_bound_ms: float | None = None
) -> Path:
    """Draw every (server, transport) series of ``rows`` on one chart; write ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency, cpu) = plt.subplots(1, 2, figsize=(13, 5))
    ordered = sorted(rows, key=lambda row: (row["server"], row["transport"], row["subscribers"]))
    colours = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4)
    for (server, transport), series in groupby(
        ordered, key=lambda row: (row["server"], row["transport"])
    ):
        points = list(series)
        subscribers = [row["subscribers"] for row in points]
        name = f"{server} {transport}"
        # One colour per series; mdactors solid, baselines dashed; a marker per percentile.
        look = {"color": next(colours), "linestyle": "-" if server == "mdactors" else "--"}
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
