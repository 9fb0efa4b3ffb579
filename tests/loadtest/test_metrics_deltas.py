"""Server-side view: two real prometheus_client scrapes in the contract's names → per-variant deltas."""

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from loadtest.server_metrics import histogram_quantile, parse_scrape, variant_deltas, variant_info

BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 1.0)


class FakeGatewayMetrics:
    """The contract's metric names, exported by the real client library (only the gateway is stood in for)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        labels = ["replica", "variant"]
        self.requests = Counter(
            "sparsefleet_requests_total", "r", [*labels, "outcome"], registry=self.registry
        )
        self.tokens = Counter("sparsefleet_generation_tokens_total", "g", labels, registry=self.registry)
        self.prompt = Counter("sparsefleet_prompt_tokens_total", "p", labels, registry=self.registry)
        self.tpot = Histogram(
            "sparsefleet_time_per_output_token_seconds", "t", labels, buckets=BUCKETS, registry=self.registry
        )
        self.up = Gauge("sparsefleet_replica_up", "u", labels, registry=self.registry)
        self.info = Gauge(
            "sparsefleet_variant_info",
            "i",
            [*labels, "method", "pattern", "sparsity", "quantization", "perplexity", "dense_perplexity"],
            registry=self.registry,
        )

    def scrape(self):
        return parse_scrape(generate_latest(self.registry).decode())


def test_deltas_per_variant_sum_replicas_and_ignore_earlier_traffic():
    m = FakeGatewayMetrics()
    m.info.labels("d0", "dense", "none", "dense", "0", "none", "24.46", "24.46").set(1)
    m.requests.labels("d0", "dense", "success").inc(100)  # before the measured window
    m.tpot.labels("d0", "dense").observe(0.5)
    before = m.scrape()
    for replica in ("s0", "s1"):  # two replicas of one variant are summed
        m.requests.labels(replica, "sparse", "success").inc(3)
        m.tokens.labels(replica, "sparse").inc(30)
        for value in (0.003, 0.015, 0.015, 0.04):
            m.tpot.labels(replica, "sparse").observe(value)
    m.requests.labels("s0", "sparse", "rejected").inc(2)
    m.requests.labels("d0", "dense", "success").inc(5)
    m.tpot.labels("d0", "dense").observe(0.008)
    deltas = variant_deltas(before, m.scrape())

    sparse = deltas["sparse"]
    assert sparse.replicas == ["s0", "s1"]
    assert sparse.requests == {"success": 6, "rejected": 2}
    assert sparse.generation_tokens == 60 and sparse.prompt_tokens == 0
    assert sparse.tpot.count == 8
    assert sparse.tpot.mean_ms == pytest.approx((0.003 + 0.015 * 2 + 0.04) * 2 / 8 * 1000)
    # cumulative buckets (le=5ms: 2, 10ms: 2, 20ms: 6, 50ms: 8): rank 4 lies in (10, 20] ms → 10 + 10·2/4
    assert sparse.tpot.p50_ms == pytest.approx(15.0)
    assert sparse.tpot.p90_ms == pytest.approx(20 + 30 * (7.2 - 6) / 2)
    assert sparse.ttft is None  # that histogram is not exported here

    dense = deltas["dense"]
    assert dense.requests == {"success": 5}
    assert dense.tpot.count == 1 and dense.tpot.mean_ms == pytest.approx(8.0)  # the 0.5 s before is excluded


def test_variant_info_labels():
    m = FakeGatewayMetrics()
    m.info.labels("s0", "sparse-2:4", "wanda", "2:4", "0.5", "none", "61.3", "24.46").set(1)
    info = variant_info(m.scrape())
    assert info == {
        "sparse-2:4": {
            "method": "wanda",
            "pattern": "2:4",
            "sparsity": "0.5",
            "quantization": "none",
            "perplexity": "61.3",
            "dense_perplexity": "24.46",
        }
    }


def test_histogram_quantile_like_prometheus():
    buckets = [(0.1, 10.0), (0.2, 30.0), (float("inf"), 40.0)]
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.1)  # rank 10: top of the first bucket
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.15)  # rank 20: halfway through (0.1, 0.2]
    assert histogram_quantile(0.1, buckets) == pytest.approx(0.04)  # first bucket interpolates from 0
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.2)  # overflow bucket: its lower bound
    assert histogram_quantile(0.5, [(0.1, 0.0), (float("inf"), 0.0)]) is None


def test_counter_reset_counts_the_new_value():
    m = FakeGatewayMetrics()
    m.requests.labels("d0", "dense", "success").inc(50)
    before = m.scrape()
    restarted = FakeGatewayMetrics()  # a gateway restart starts its counters again from zero
    restarted.requests.labels("d0", "dense", "success").inc(4)
    assert variant_deltas(before, restarted.scrape())["dense"].requests == {"success": 4}
