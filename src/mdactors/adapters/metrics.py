"""Prometheus metrics: one registry per service, RED for HTTP, feed metrics read at scrape.

Feed metrics (ticks published, subscribers, drops, staleness) are collected
from the engine's own counters when Prometheus scrapes, so the tick path pays
nothing for them. Label values come from fixed sets only: routes are URL
rule patterns (``unknown`` when none matched), methods a known verb or
``OTHER``, symbols the configured ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import trio
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from mdactors.adapters.breaker import CircuitBreaker
from mdactors.adapters.latency_histogram import LatencyHistogram
from mdactors.adapters.loop_lag import LoopLag
from mdactors.domain.scenarios import ScenarioKind

__all__ = ["REQUEST_BUCKETS", "FeedSnapshot", "Metrics"]

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_CONSTANT_LABELS = ("service", "instance", "version")


@dataclass(frozen=True, slots=True)
class FeedSnapshot:
    """The engine's counters at one moment, as plain data."""

    published: Mapping[str, int]
    last_tick_ns: Mapping[str, int]
    subscribers: Mapping[tuple[str, str], int]
    dropped: Mapping[tuple[str, str, str], int]
    active_streams: int
    scenarios: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """Active chaos scenarios per ``(scenario_type, symbol)``."""
    halted: Mapping[str, bool] = field(default_factory=dict)
    """Per symbol, whether its price circuit breaker is open."""
    streams: Mapping[str, int] = field(default_factory=dict)
    """Open streams per transport (``client_type``)."""


class _FeedCollector(Collector):
    """Exposes the last :class:`FeedSnapshot` taken on the event loop.

    ``generate_latest`` runs in a worker thread while the loop keeps mutating
    the engine's counters; taking the snapshot on the loop first (``refresh``)
    means the thread only ever reads data nobody else touches.
    """

    def __init__(self, snapshot: Callable[[], FeedSnapshot], source: str) -> None:
        self._snapshot = snapshot
        self._source = source
        self._feed = snapshot()

    def refresh(self) -> FeedSnapshot:
        self._feed = self._snapshot()
        return self._feed

    def collect(self) -> Iterable[Metric]:
        feed = self._feed
        updates = CounterMetricFamily(
            "market_data_price_updates",
            "Ticks published per symbol.",
            labels=["symbol", "source"],
        )
        for key, count in feed.published.items():
            updates.add_metric([key, self._source], count)
        yield updates
        subscribers = GaugeMetricFamily(
            "market_data_subscriber_count",
            "Open subscriptions per symbol and transport.",
            labels=["symbol", "client_type"],
        )
        for (key, client_type), count in feed.subscribers.items():
            subscribers.add_metric([key, client_type], count)
        yield subscribers
        dropped = CounterMetricFamily(
            "market_data_dropped_updates",
            "Ticks a subscriber did not receive (conflated or skipped).",
            labels=["symbol", "client_type", "reason"],
        )
        for (key, client_type, reason), count in feed.dropped.items():
            dropped.add_metric([key, client_type, reason], count)
        yield dropped
        staleness = GaugeMetricFamily(
            "market_data_staleness_seconds",
            "Seconds since the last tick per symbol.",
            labels=["symbol"],
        )
        now_ns = time.time_ns()
        for key, last_ns in feed.last_tick_ns.items():
            staleness.add_metric([key], max(0.0, (now_ns - last_ns) / 1e9))
        yield staleness
        scenarios = GaugeMetricFamily(
            "market_data_scenario_active",
            "Active chaos scenarios per scenario type and symbol.",
            labels=["scenario_type", "symbol"],
        )
        for kind in ScenarioKind:
            for key in feed.published:
                scenarios.add_metric([kind.value, key], feed.scenarios.get((kind.value, key), 0))
        yield scenarios
        halted = GaugeMetricFamily(
            "market_data_circuit_breaker_open",
            "1 while a symbol's price circuit breaker halts its publication.",
            labels=["symbol"],
        )
        for key, is_open in feed.halted.items():
            halted.add_metric([key], 1.0 if is_open else 0.0)
        yield halted
        yield GaugeMetricFamily(
            "market_data_active_streams",
            "Open streams across all transports.",
            value=feed.active_streams,
        )
        streams = GaugeMetricFamily(
            "market_data_streams", "Open streams per transport.", labels=["client_type"]
        )
        for client_type, count in feed.streams.items():
            streams.add_metric([client_type], count)
        yield streams


class _BreakerCollector(Collector):
    """``market_data_circuit_breaker_state{dependency}`` of every watched breaker."""

    def __init__(self) -> None:
        self.breakers: list[CircuitBreaker] = []

    def collect(self) -> Iterable[Metric]:
        state = GaugeMetricFamily(
            "market_data_circuit_breaker_state",
            "Dependency circuit breaker: 0 closed, 1 half-open, 2 open.",
            labels=["dependency"],
        )
        for breaker in self.breakers:
            state.add_metric([breaker.name], breaker.state.gauge)
        yield state


class Metrics:
    """The service's registry and its directly-updated metrics."""

    def __init__(self, service: str, instance: str, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._constants = (service, instance, version)
        labels = [*_CONSTANT_LABELS, "method", "route", "code"]
        self.http_requests = Counter(
            "http_requests_total", "HTTP requests.", labels, registry=self.registry
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration.",
            labels,
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.http_errors = Counter(
            "http_request_errors_total",
            "HTTP requests answered with a 4xx or 5xx status.",
            labels,
            registry=self.registry,
        )
        self.publication_latency = LatencyHistogram(
            "market_data_publication_latency_seconds",
            "Tick publish to hand-off to the transport.",
            "client_type",
            LATENCY_BUCKETS,
        )
        self.registry.register(self.publication_latency)
        self.loop_lag = LoopLag()
        self.registry.register(self.loop_lag)
        self._feeds: list[_FeedCollector] = []
        self._breakers = _BreakerCollector()
        self.registry.register(self._breakers)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def observe_request(self, method: str, route: str, code: int, seconds: float) -> None:
        """Record one HTTP request under its route pattern."""
        verb = method if method in _METHODS else "OTHER"
        values = (*self._constants, verb, route, str(code))
        self.http_requests.labels(*values).inc()
        self.http_duration.labels(*values).observe(seconds)
        if code >= 400:
            self.http_errors.labels(*values).inc()

    def watch_feed(self, snapshot: Callable[[], FeedSnapshot], source: str) -> None:
        """Collect feed metrics from ``snapshot`` at every scrape."""
        collector = _FeedCollector(snapshot, source)
        self._feeds.append(collector)
        self.registry.register(collector)

    def feeds(self) -> list[FeedSnapshot]:
        """A fresh snapshot of every watched feed (take it on the event loop)."""
        return [feed.refresh() for feed in self._feeds]

    def watch_breaker(self, breaker: CircuitBreaker) -> None:
        """Export ``breaker``'s state (its name is the ``dependency`` label)."""
        self._breakers.breakers.append(breaker)

    async def render(self) -> bytes:
        """The text exposition, generated in a worker thread (off the event loop)."""
        for feed in self._feeds:
            feed.refresh()
        return await trio.to_thread.run_sync(generate_latest, self.registry)
