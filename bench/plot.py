"""The sweep's PNG (latency percentiles and server CPU per message vs subscribers)
and the soak's (streams, CPU per stream and RSS over time)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from pathlib import Path

__all__ = ["plot_soak", "plot_sweep", "sweep_series"]

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


def plot_soak(doc: dict[str, object], path: Path) -> Path:
    """Streams per window by transport, server CPU per stream and RSS over the soak."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spans: list[Row] = doc["windows"]  # type: ignore[assignment]
    minutes = [float(span["t_s"]) / 60 for span in spans]  # type: ignore[arg-type]
    figure, (streams, cpu, rss) = plt.subplots(1, 3, figsize=(16, 4.5))
    transports = list(spans[0]["per_transport"]) if spans else []  # type: ignore[call-overload]
    for transport in transports:
        values = [span["per_transport"][transport] for span in spans]  # type: ignore[index]
        streams.plot(minutes, values, marker="o", label=transport)
    streams.plot(minutes, [span["streams"] for span in spans], marker="s", label="all")
    cpu.plot(minutes, [span["cpu_ms_per_stream"] for span in spans], marker="o")
    rss.plot(minutes, [span["rss_mb"] for span in spans], marker="o")
    for fault in doc.get("faults") or []:  # type: ignore[attr-defined]
        for axes in (streams, cpu, rss):
            axes.axvline(fault["t_s"] / 60, color="grey", linewidth=0.8, linestyle=":")
    streams.set(xlabel="minutes", ylabel="streams completed per window", title="Churn")
    cpu.set(xlabel="minutes", ylabel="server CPU ms per stream", title="CPU per stream")
    rss.set(xlabel="minutes", ylabel="server RSS (MB)", title="Memory")
    for axes in (streams, cpu, rss):
        axes.grid(True, alpha=0.3)
        axes.set_ylim(bottom=0)
    streams.legend(fontsize="small")
    figure.suptitle(str(doc.get("verdict", {}).get("line", "")), fontsize="small")  # type: ignore[attr-defined]
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
