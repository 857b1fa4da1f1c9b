"""Prometheus text exposition (format 0.0.4), written by hand: a few counters and
histograms need no client library.

Series: requests by route and status, request latency by route, inputs per model
batch, embedding-cache hits and misses by model and kind, requests refused because
the queue was full, and the inputs waiting now. Thread-safe: the model threads record
batches while the event loop records requests.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    pairs = (*labels, extra) if extra else labels
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    def __init__(self, name: str, help: str):
        self.name, self.help = name, help
        self.values: dict[Labels, float] = defaultdict(float)

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        self.values[labels] += amount

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        lines += [f"{self.name}{_labels(k)} {_number(v)}" for k, v in sorted(self.values.items())]
        return lines


class Histogram:
    def __init__(self, name: str, help: str, buckets: Sequence[float]):
        self.name, self.help = name, help
        self.buckets = tuple(sorted(buckets))
        self.counts: dict[Labels, list[int]] = {}
        self.sums: dict[Labels, float] = defaultdict(float)

    def observe(self, value: float, labels: Labels = ()) -> None:
        counts = self.counts.setdefault(labels, [0] * (len(self.buckets) + 1))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sums[labels] += value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for labels, counts in sorted(self.counts.items()):
            running = 0
            for bound, n in zip((*self.buckets, math.inf), counts):
                running += n
                lines.append(f"{self.name}_bucket{_labels(labels, ('le', _number(bound)))} {running}")
            lines.append(f"{self.name}_sum{_labels(labels)} {_number(self.sums[labels])}")
            lines.append(f"{self.name}_count{_labels(labels)} {running}")
        return lines


class Metrics:
    """The service's series; ``render()`` is the ``/metrics`` body."""

    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = Counter("cotembed_requests_total", "HTTP requests answered, by route and status code.")
        self.latency = Histogram("cotembed_request_duration_seconds", "Time from request to response, by route.", LATENCY_BUCKETS)
        self.batch_size = Histogram("cotembed_batch_size", "Inputs per model batch formed by the dynamic batcher.", BATCH_BUCKETS)
        self.cache = Counter("cotembed_cache_lookups_total", "Input embeddings looked up in the embedding cache, by result (hit, miss).")
        self.inputs = Counter("cotembed_inputs_total", "Inputs classified or embedded, by model and kind.")
        self.rejected = Counter("cotembed_rejected_total", "Requests refused before any work, by reason (queue_full, ...).")
        self._gauges: list[tuple[str, str, Callable[[], dict[Labels, float]]]] = []

    def gauge(self, name: str, help: str, read: Callable[[], dict[Labels, float]]) -> None:
        """A value read when ``/metrics`` is scraped (e.g. the inputs waiting now)."""
        self._gauges.append((name, help, read))

    def request(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests.inc((("route", route), ("status", str(status))))
            self.latency.observe(seconds, (("route", route),))

    def batch(self, model: str, kind: str, size: int, encoded: int) -> None:
        """One model batch of ``size`` inputs, ``encoded`` of them computed (the rest were cached)."""
        with self._lock:
            self.batch_size.observe(size, (("model", model),))
            self.cache.inc((("model", model), ("kind", kind), ("result", "hit")), size - encoded)
            self.cache.inc((("model", model), ("kind", kind), ("result", "miss")), encoded)
            self.inputs.inc((("model", model), ("kind", kind)), size)

    def reject(self, reason: str) -> None:
        with self._lock:
            self.rejected.inc((("reason", reason),))

    def render(self) -> str:
        with self._lock:
            lines: list[str] = []
            for series in (self.requests, self.latency, self.batch_size, self.cache, self.inputs, self.rejected):
                lines += series.render()
        for name, help, read in self._gauges:
            lines += [f"# HELP {name} {help}", f"# TYPE {name} gauge"]
            lines += [f"{name}{_labels(k)} {_number(v)}" for k, v in sorted(read().items())]
        return "\n".join(lines) + "\n"
