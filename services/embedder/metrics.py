"""The embedder's Prometheus metrics: request volume and how well batching works."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class EmbedderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("draftgate_embedder_requests", "POST /v1/embeddings answered", registry=registry)
        self.inputs = Counter("draftgate_embedder_inputs", "Strings embedded", registry=registry)
        self.batch_size = Histogram("draftgate_embedder_batch_size", "Inputs per model call", registry=registry,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.batch_seconds = Histogram("draftgate_embedder_batch_seconds", "Seconds per model call",
                                       registry=registry,
                                       buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
