"""What subscribers observe: latency samples, sequence gaps, counts (pure, no I/O).

A :class:`Tally` lives in one load-generator worker; every received tick goes
through :meth:`Tally.observe`. Only ticks received inside the measurement
window count; sequence numbers are followed from the first tick of each
(client, symbol) stream so a gap that straddles the window start is seen.
:func:`merge` folds the tallies of all workers into one :class:`Observed`.
"""

from __future__ import annotations

import time
from array import array
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Observed", "Tally", "merge", "percentiles"]

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}


@dataclass
class Tally:
    """One worker's observations; picklable so it can be sent back to the parent."""

    window: tuple[int, int] = (0, 0)
    """Measurement window in wall-clock ns: ``[start, end)``; ``(0, 0)`` = not started."""
    latencies_us: array = field(default_factory=lambda: array("q"))
    received: int = 0
    gaps: int = 0
    """How many times a stream's sequence jumped forward (one event per jump)."""
    missed: int = 0
    """Ticks skipped inside those jumps."""
    out_of_order: int = 0
    errors: int = 0
    first_error: str = ""
    connect_ms: list[float] = field(default_factory=list)
    _last_seq: dict[tuple[int, str], int] = field(default_factory=dict, repr=False)

    def observe(self, client: int, symbol: str, seq: int, ts_ns: int) -> None:
        """Record one tick ``(symbol, seq, ts_ns)`` received now by ``client``."""
        now = time.time_ns()
        key = (client, symbol)
        last = self._last_seq.get(key)
        self._last_seq[key] = seq if last is None or seq > last else last
        start, end = self.window
        if not start <= now < end:
            return
        self.received += 1
        self.latencies_us.append((now - ts_ns) // 1000)
        if last is not None:
            if seq > last + 1:
                self.gaps += 1
                self.missed += seq - last - 1
            elif seq <= last:
                self.out_of_order += 1

    def error(self, error: BaseException | str) -> None:
        """Count a client that failed (the first message is kept)."""
        self.errors += 1
        if not self.first_error:
            self.first_error = error if isinstance(error, str) else repr(error)[:300]

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_last_seq"] = {}
        return state


def percentiles(values_us: np.ndarray) -> dict[str, float]:
    """p50/p90/p99/p99.9/max of microsecond samples, in milliseconds."""
    if not len(values_us):
        return {name: float("nan") for name in (*PERCENTILES, "max")}
    ms = values_us / 1000.0
    out = {name: round(float(np.percentile(ms, q)), 3) for name, q in PERCENTILES.items()}
    out["max"] = round(float(ms.max()), 3)
    return out


@dataclass
class Observed:
    """Every worker's observations together."""

    received: int
    latency_ms: dict[str, float]
    gaps: int
    missed: int
    out_of_order: int
    errors: int
    first_error: str
    connect_ms: dict[str, float]


def merge(tallies: list[Tally]) -> Observed:
    """Fold the workers' tallies into one summary."""
    latencies = np.concatenate(
        [np.frombuffer(tally.latencies_us, dtype=np.int64) for tally in tallies] or [np.zeros(0)]
    )
    connects = np.array([ms for tally in tallies for ms in tally.connect_ms], dtype=float)
    connect = percentiles(connects * 1000.0)
    return Observed(
        received=sum(tally.received for tally in tallies),
        latency_ms=percentiles(latencies.astype(float)),
        gaps=sum(tally.gaps for tally in tallies),
        missed=sum(tally.missed for tally in tallies),
        out_of_order=sum(tally.out_of_order for tally in tallies),
        errors=sum(tally.errors for tally in tallies),
        first_error=next((tally.first_error for tally in tallies if tally.first_error), ""),
        connect_ms={key: connect[key] for key in ("p50", "p99", "max")},
    )
