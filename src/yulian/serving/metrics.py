"""Prometheus metrics of one app: requests, latency histograms, batch sizes, queue depth, tokens, in-flight requests.

Each app has its own `CollectorRegistry` (several apps in one process, as in tests, do not collide). With several
uvicorn workers each process exposes its own numbers; scrape the pods, or set `PROMETHEUS_MULTIPROC_DIR` and use
prometheus-client's multiprocess collector.

`yulian_in_flight_requests` is the metric the Kubernetes HorizontalPodAutoscaler in `deploy/` scales on.
"""

from __future__ import annotations

from typing import Any

from yulian._optional import require

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The server's Prometheus metrics, in a registry of their own."""

    def __init__(self) -> None:
        prom = require("prometheus_client", extra="serve", purpose="the server's /metrics")
        self._prom = prom
        self.registry: Any = prom.CollectorRegistry()
        r = self.registry
        self.requests = prom.Counter(
            "yulian_requests", "HTTP requests answered", ["route", "model", "status"], registry=r
        )
        self.latency = prom.Histogram(
            "yulian_request_latency_seconds",
            "Time to answer a request",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = prom.Histogram(
            "yulian_batch_size", "Items per model call (micro-batching)", ["model"], buckets=_BATCH_BUCKETS, registry=r
        )
        self.queue_depth = prom.Gauge("yulian_queue_depth", "Items waiting for a model call", ["model"], registry=r)
        self.tokens = prom.Counter(
            "yulian_tokens", "Tokens processed (estimated where the model does not say)", ["model", "kind"], registry=r
        )
        self.in_flight = prom.Gauge("yulian_in_flight_requests", "Requests being answered now", registry=r)
        self.ready = prom.Gauge("yulian_ready", "1 when all models are loaded and the server takes traffic", registry=r)
        self.rejected = prom.Counter("yulian_rejected", "Requests refused by auth or limits", ["reason"], registry=r)

    def observe_batch(self, model: str, size: int, depth: int) -> None:
        """Record one model call of `size` items, with `depth` items still waiting."""
        self.batch_size.labels(model).observe(size)
        self.queue_depth.labels(model).set(depth)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return self._prom.generate_latest(self.registry), self._prom.CONTENT_TYPE_LATEST
