"""Prometheus metrics of docs/contracts.md section 3, in a registry per app (tests build several apps).

Counters and histograms are observed per request; the gauges (in-flight, queued, capacity, up, variant info)
are read from the replicas at scrape time by a collector, so there is no second copy of that state to drift.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.replicas import Replica

PREFIX = "sparsefleet"
LABELS = ("replica", "variant")
OUTCOMES = ("success", "error", "rejected", "timeout", "cancelled")
NO_REPLICA = "none"  # `replica` label of requests rejected before any replica was chosen (503)

# 1 ms steps where dense and sparse decode differ (a few ms per token on a CPU), coarser beyond 100 ms.
_FINE = (0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009, 0.010, 0.012, 0.014, 0.016,
         0.018, 0.020, 0.025, 0.030, 0.035, 0.040, 0.050, 0.060, 0.070, 0.080, 0.090, 0.100)  # fmt: skip
TOKEN_BUCKETS = _FINE + (0.125, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5)
REQUEST_BUCKETS = _FINE + (0.125, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0,
                           30.0, 60.0, 120.0, 300.0)  # fmt: skip


class Telemetry:
    def __init__(self, replicas: Callable[[], Iterable[Replica]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests_total", "Finished requests by outcome.", (*LABELS, "outcome"), registry=reg
        )
        self.prompt_tokens = Counter(
            f"{PREFIX}_prompt_tokens_total", "Prompt tokens processed.", LABELS, registry=reg
        )
        self.generation_tokens = Counter(
            f"{PREFIX}_generation_tokens_total", "Output tokens generated.", LABELS, registry=reg
        )
        self.ttft = Histogram(
            f"{PREFIX}_time_to_first_token_seconds",
            "Time to first output token.",
            LABELS,
            buckets=REQUEST_BUCKETS,
            registry=reg,
        )
        self.itl = Histogram(
            f"{PREFIX}_inter_token_latency_seconds",
            "Gap between consecutive output tokens.",
            LABELS,
            buckets=TOKEN_BUCKETS,
            registry=reg,
        )
        self.tpot = Histogram(
            f"{PREFIX}_time_per_output_token_seconds",
            "(e2e - TTFT) / (output tokens - 1) per request.",
            LABELS,
            buckets=TOKEN_BUCKETS,
            registry=reg,
        )
        self.e2e = Histogram(
            f"{PREFIX}_e2e_request_latency_seconds",
            "Request latency, queueing included.",
            LABELS,
            buckets=REQUEST_BUCKETS,
            registry=reg,
        )
        reg.register(_ReplicaCollector(replicas))

    def prime(self, replica: str, variant: str) -> None:
        """Create every outcome series at 0 so that rates and increases work from the first request."""
        for outcome in OUTCOMES:
            self.requests.labels(replica, variant, outcome)
        self.prompt_tokens.labels(replica, variant)
        self.generation_tokens.labels(replica, variant)

    def finished(self, replica: str, variant: str, outcome: str) -> None:
        self.requests.labels(replica, variant, outcome).inc()


class _ReplicaCollector(Collector):
    def __init__(self, replicas: Callable[[], Iterable[Replica]]) -> None:
        self._replicas = replicas

    def describe(self) -> Iterator[Metric]:
        return iter(())  # dynamic; nothing to check against at registration time

    def collect(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily(
            f"{PREFIX}_requests_in_flight", "Requests being generated.", labels=LABELS
        )
        queued = GaugeMetricFamily(f"{PREFIX}_requests_queued", "Requests waiting for a slot.", labels=LABELS)
        capacity = GaugeMetricFamily(
            f"{PREFIX}_queue_capacity", "Max queued requests before 429.", labels=LABELS
        )
        up = GaugeMetricFamily(f"{PREFIX}_replica_up", "1 when the replica is ready, else 0.", labels=LABELS)
        info_labels = (
            *LABELS,
            "method",
            "pattern",
            "sparsity",
            "quantization",
            "perplexity",
            "dense_perplexity",
        )
        info = GaugeMetricFamily(
            f"{PREFIX}_variant_info", "Variant metadata from prune_report.json (value 1).", labels=info_labels
        )
        for replica in self._replicas():
            key = [replica.name, replica.variant]
            in_flight.add_metric(key, replica.in_flight)
            queued.add_metric(key, replica.queued)
            capacity.add_metric(key, replica.max_queue)
            up.add_metric(key, 1.0 if replica.healthy else 0.0)
            info.add_metric(key + list(replica.metadata.metric_labels().values()), 1.0)
        yield from (in_flight, queued, capacity, up, info)
