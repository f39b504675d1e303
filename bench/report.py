"""Results: the JSON document, mdactors/baseline ratios and the printed table."""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from pathlib import Path

from bench.machine import describe_machine, git_commit

__all__ = ["RESULTS_DIR", "document", "format_table", "ratios", "write_json"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def ratios(rows: Sequence[dict[str, object]]) -> list[dict[str, object]]:
    """mdactors ÷ baseline for throughput and messages per server-CPU-second, per point."""
    baselines = {
        (row["transport"], row["subscribers"]): row for row in rows if row["server"] == "baseline"
    }
    out = []
    for row in rows:
        base = baselines.get((row["transport"], row["subscribers"]))
        if row["server"] != "mdactors" or base is None:
            continue
        entry: dict[str, object] = {
            "transport": row["transport"],
            "subscribers": row["subscribers"],
        }
        for key in ("msgs_per_s", "msgs_per_server_cpu_s"):
            ours, theirs = row.get(key), base.get(key)
            entry[key] = round(ours / theirs, 2) if ours and theirs else None  # type: ignore[operator]
        out.append(entry)
    return out


def document(kind: str, parameters: dict[str, object], rows: list[dict[str, object]]) -> dict:
    """The whole result: machine, commit, parameters, rows and ratios."""
    return {
        "kind": kind,
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": describe_machine(),
        "commit": git_commit(RESULTS_DIR.parent.parent),
        "parameters": parameters,
        "rows": rows,
        "ratios": ratios(rows),
    }


def stamp() -> str:
    """The current UTC time as results' file names start with it."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


def write_json(doc: dict, directory: Path = RESULTS_DIR, stem: str | None = None) -> Path:
    """Write ``doc`` as ``<directory>/<UTC time>-<kind>.json``; return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem or stamp() + '-' + doc['kind']}.json"
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path


#: (row key or latency percentile, width, decimals or None for text, title)
_COLUMNS: tuple[tuple[str, int, int | None, str], ...] = (
    ("server", 9, None, "server"),
    ("transport", 4, None, "tx"),
    ("subscribers", 6, 0, "subs"),
    ("connected", 6, 0, "conn"),
    ("msgs_per_s", 8, 0, "msg/s"),
    ("delivered_ratio", 5, 2, "got"),
    ("p50", 7, 2, "p50 ms"),
    ("p99", 7, 2, "p99 ms"),
    ("p99.9", 7, 2, "p99.9"),
    ("max", 7, 1, "max"),
    ("dropped", 6, 0, "drops"),
    ("server_cpu_us_per_msg", 7, 2, "µs/msg"),
    ("server_cpu_pct", 6, 1, "cpu %"),
    ("server_rss_mb", 7, 1, "rss MB"),
    ("rss_per_subscriber_kb", 7, 1, "KB/sub"),
    ("connect_all_s", 7, 2, "conn s"),
    ("loadgen_cpu_pct", 6, 0, "gen %"),
)
_LATENCY = ("p50", "p99", "p99.9", "max")


def _cell(row: dict[str, object], key: str, width: int, decimals: int | None) -> str:
    latency = row["latency_ms"]
    value = latency.get(key) if key in _LATENCY else row.get(key)  # type: ignore[attr-defined]
    if decimals is None:
        return str(value).ljust(width)
    if value is None:
        return "-".rjust(width)
    return f"{value:>{width}.{decimals}f}"


def format_table(rows: Sequence[dict[str, object]]) -> str:
    """A fixed-width table of the rows, then the ratios."""
    header = " ".join(
        title.ljust(width) if decimals is None else title.rjust(width)
        for _, width, decimals, title in _COLUMNS
    )
    lines = [header]
    lines += [" ".join(_cell(row, *column[:3]) for column in _COLUMNS) for row in rows]
    for entry in ratios(rows):
        lines.append(
            f"mdactors/baseline {entry['transport']} {entry['subscribers']} subs: "
            f"throughput ×{entry['msgs_per_s']}, "
            f"msgs per server-CPU-second ×{entry['msgs_per_server_cpu_s']}"
        )
    return "\n".join(lines)
