"""Prometheus metrics, one registry per app instance (tests run several apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "neumeta_http_requests", "HTTP requests by route, method and status.",
            ["route", "method", "status"], registry=r,
        )
        self.request_seconds = Histogram(
            "neumeta_http_request_duration_seconds", "HTTP request latency.", ["route"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.generations = Counter(
            "neumeta_generations", "Model generations (hypernetwork pass + ONNX export).",
            ["arch", "backend"], registry=r,
        )
        self.generation_seconds = Histogram(
            "neumeta_generation_duration_seconds", "Generation + export latency.", ["arch", "backend"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.generations_in_flight = Gauge(
            "neumeta_generations_in_flight", "Generations running now.", registry=r
        )
        self.generation_queue = Gauge(
            "neumeta_generation_queue_depth", "Requests waiting for a generation slot.", registry=r
        )
        self.cache_events = Counter(
            "neumeta_cache_events", "Cache events by tier (memory|redis) and event "
            "(hit|miss|coalesced|error|corrupt|store).", ["tier", "event"], registry=r,
        )
        self.cache_degraded = Gauge(
            "neumeta_cache_degraded", "1 while the Redis tier is unreachable or refuses writes (OOM, READONLY).",
            registry=r
        )
        # Read from the embedded tier at scrape time (BlobCache wires them): no bookkeeping per put.
        self.cache_memory_bytes = Gauge(
            "neumeta_cache_memory_bytes", "Bytes of model blobs held by the embedded (in-process) cache.", registry=r
        )
        self.cache_memory_entries = Gauge(
            "neumeta_cache_memory_entries", "Model blobs held by the embedded (in-process) cache.", registry=r
        )
        self.checkpoint_info = Gauge(
            "neumeta_checkpoint_info", "1 per loaded checkpoint: which checkpoint (first 12 hex of its "
            "SHA-256) serves each arch on this replica.", ["arch", "checkpoint"], registry=r,
        )
        self.bytes_served = Counter(
            "neumeta_bytes_served", "Model bytes sent in response bodies.", registry=r
        )
