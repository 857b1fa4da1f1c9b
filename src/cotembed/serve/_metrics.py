"""The service's Prometheus metrics, kept by ``prometheus_client`` in a registry of their own
(several services in one process, as in tests, do not share series).

Series: requests by route and status, request latency by route, inputs per model
batch, embedding-cache hits and misses by model and kind, inputs by model and kind,
requests refused because the queue was full, and gauges read when scraped (the inputs
waiting now). prometheus_client is thread-safe: the model threads record batches
while the event loop records requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)

Labels = tuple[tuple[str, str], ...]


class _ReadGauge:
    """A gauge whose values are read when ``/metrics`` is scraped."""

    def __init__(self, name: str, help: str, read: Callable[[], dict[Labels, float]]):
        self.name, self.help, self.read = name, help, read

    def collect(self) -> Iterator[Metric]:
        values = self.read()
        names = [k for k, _ in next(iter(values), ())]
        family = GaugeMetricFamily(self.name, self.help, labels=names)
        for labels, value in sorted(values.items()):
            family.add_metric([v for _, v in labels], value)
        yield family


class Metrics:
    """The service's series; ``render()`` is the ``/metrics`` body (text format 0.0.4)."""

    CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("cotembed_requests", "HTTP requests answered, by route and status code.", ["route", "status"], registry=r)
        self.latency = Histogram("cotembed_request_duration_seconds", "Time from request to response, by route.", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("cotembed_batch_size", "Inputs per model batch formed by the dynamic batcher.", ["model"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.cache = Counter("cotembed_cache_lookups", "Input embeddings looked up in the embedding cache, by result (hit, miss).",
                             ["model", "kind", "result"], registry=r)
        self.inputs = Counter("cotembed_inputs", "Inputs classified or embedded, by model and kind.", ["model", "kind"], registry=r)
        self.rejected = Counter("cotembed_rejected", "Requests refused before any work, by reason (queue_full, ...).", ["reason"],
                                registry=r)

    def gauge(self, name: str, help: str, read: Callable[[], dict[Labels, float]]) -> None:
        """A value read when ``/metrics`` is scraped (e.g. the inputs waiting now)."""
        self.registry.register(_ReadGauge(name, help, read))

    def request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def batch(self, model: str, kind: str, size: int, encoded: int) -> None:
        """One model batch of ``size`` inputs, ``encoded`` of them computed (the rest were cached)."""
        self.batch_size.labels(model).observe(size)
        self.cache.labels(model, kind, "hit").inc(size - encoded)
        self.cache.labels(model, kind, "miss").inc(encoded)
        self.inputs.labels(model, kind).inc(size)

    def reject(self, reason: str) -> None:
        self.rejected.labels(reason).inc()

    def render(self) -> str:
        return generate_latest(self.registry).decode("utf-8")
