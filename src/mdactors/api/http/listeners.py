"""Who is listening: ``GET /api/v1/listeners``, the stream metrics as one small JSON.

Everything here is read from what ``/metrics`` exposes, at the moment of the
request: the feed snapshot (open streams and subscriptions per transport,
drops per transport and reason), the publication-latency histogram (p50/p99
per transport, estimated from its buckets as ``histogram_quantile`` does),
the event-loop lag and the readiness checks (history/Redis, configuration
service, cluster, ...). Nothing is counted twice.

Counters only grow, so a number since start says little about *now*. The
endpoint keeps a few past readings of the same counters (one per second at
most, the last ``WINDOW_S`` seconds' worth, in :class:`ListenerWindow`) and
reports, next to each total, what happened since the reading about
``WINDOW_S`` ago: drops in the window and latency percentiles of the
messages delivered in it.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from quart import Blueprint, Response, current_app

from mdactors.adapters.latency_histogram import quantile
from mdactors.adapters.metrics import FeedSnapshot
from mdactors.api.codec import rfc3339
from mdactors.api.http.readiness import dependency_checks
from mdactors.api.http.web import context, json_response

__all__ = ["WINDOW_S", "ListenerWindow", "Reading", "blueprint", "listeners_view"]

blueprint = Blueprint("listeners", __name__)

WINDOW_S = 10.0
_SAMPLE_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class Reading:
    """The growing counters at one moment: latency buckets and drops per transport."""

    at: float
    """``time.monotonic()`` of the reading."""
    latency: Mapping[str, Sequence[int]]
    """Per-bucket (not cumulative) counts per transport."""
    dropped: Mapping[tuple[str, str], int]
    """Drops per ``(transport, reason)``, summed over symbols."""


class ListenerWindow:
    """Past :class:`Reading` s, one per second at most, enough to reach ``window`` back."""

    def __init__(self, window: float = WINDOW_S) -> None:
        self.window = window
        self._readings: deque[Reading] = deque(maxlen=int(window / _SAMPLE_EVERY_S) * 2 + 2)

    def baseline(self, now: Reading) -> Reading | None:
        """The newest reading at least ``window`` older than ``now`` (else the oldest one
        kept; ``None`` at the first call); keeps ``now`` for later calls."""
        readings = self._readings
        while len(readings) > 1 and readings[1].at <= now.at - self.window:
            readings.popleft()  # a newer reading is old enough: this one is not needed
        base = readings[0] if readings else None
        if not readings or now.at - readings[-1].at >= _SAMPLE_EVERY_S:
            readings.append(now)
        return base


def _latency(bounds: Sequence[float], counts: Sequence[int]) -> dict[str, Any]:
    def ms(q: float) -> float | None:
        value = quantile(bounds, counts, q)
        return None if value is None else round(value * 1000.0, 3)

    return {"count": sum(counts), "p50_ms": ms(0.5), "p99_ms": ms(0.99)}


def listeners_view(
    feed: FeedSnapshot,
    bounds: Sequence[float],
    now: Reading,
    base: Reading | None,
) -> dict[str, Any]:
    """Streams, subscriptions, drops and latency per transport; window = ``now - base``."""
    subscriptions: Counter[str] = Counter()
    for (_key, client_type), count in feed.subscribers.items():
        subscriptions[client_type] += count
    names = sorted({*feed.streams, *subscriptions, *now.latency, *(t for t, _ in now.dropped)})
    transports: dict[str, Any] = {}
    for name in names:
        reasons = {
            reason: {
                "total": total,
                "window": total - (base.dropped.get((t, reason), 0) if base else 0),
            }
            for (t, reason), total in sorted(now.dropped.items())
            if t == name
        }
        counts = now.latency.get(name, [0] * len(bounds))
        before = base.latency.get(name) if base is not None else None
        recent = counts if before is None else [a - b for a, b in zip(counts, before, strict=True)]
        transports[name] = {
            "streams": feed.streams.get(name, 0),
            "subscriptions": subscriptions[name],
            "dropped": {
                "total": sum(r["total"] for r in reasons.values()),
                "window": sum(r["window"] for r in reasons.values()),
                "reasons": reasons,
            },
            "latency": {"window": _latency(bounds, recent), "total": _latency(bounds, counts)},
        }
    return {
        "window_seconds": None if base is None else round(now.at - base.at, 3),
        "active_streams": feed.active_streams,
        "transports": transports,
    }


def _reading(feed: FeedSnapshot, latency: Mapping[str, Sequence[int]]) -> Reading:
    dropped: Counter[tuple[str, str]] = Counter()
    for (_key, client_type, reason), count in feed.dropped.items():
        dropped[(client_type, reason)] += count
    return Reading(time.monotonic(), latency, dict(dropped))


@blueprint.get("/api/v1/listeners")
async def listeners() -> Response:
    """Who is listening: streams, drops and publication latency per transport (totals and
    the last ~10 s), event-loop lag and dependency status; read from the metrics."""
    ctx = context()
    metrics = ctx.metrics
    [feed] = metrics.feeds()
    histogram = metrics.publication_latency
    now = _reading(feed, histogram.counts())
    window = current_app.extensions.setdefault("mdactors.listeners", ListenerWindow())
    body = listeners_view(feed, histogram.bounds, now, window.baseline(now))
    lag = metrics.loop_lag
    now_ns = time.time_ns()
    body["max_streams"] = ctx.streams.max_streams
    body["event_loop_lag"] = {
        "last_ms": round(lag.last * 1000.0, 3),
        "max_ms": round(lag.recent_max * 1000.0, 3),
        "window_seconds": lag.window,
    }
    body["dependencies"] = dependency_checks(ctx, now_ns)
    body["timestamp"] = rfc3339(now_ns)
    return json_response(body)
