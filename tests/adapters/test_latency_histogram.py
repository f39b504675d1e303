"""The fan-out latency histogram exposes exactly what prometheus-client's would."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mdactors.adapters.latency_histogram import LatencyHistogram
from mdactors.adapters.metrics import LATENCY_BUCKETS

NAME = "market_data_publication_latency_seconds"


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_matches_prometheus_client_histogram_sample_for_sample() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    fast = LatencyHistogram(NAME, "Latency.", "client_type", LATENCY_BUCKETS)
    ours.register(fast)
    reference = Histogram(NAME, "Latency.", ["client_type"], buckets=LATENCY_BUCKETS,
                          registry=theirs)  # fmt: skip
    rng = random.Random(5)
    values = [rng.choice(LATENCY_BUCKETS) for _ in range(50)]  # bounds themselves: le is ≤
    values += [rng.expovariate(200) for _ in range(2_000)] + [0.0, 3.0]
    for i, value in enumerate(values):
        client = ("grpc", "ws")[i % 2]
        fast.labels(client).observe(value)
        reference.labels(client).observe(value)
    got, want = samples(ours), samples(theirs)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert abs(got[key] - value) < 1e-9, key
