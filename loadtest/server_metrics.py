"""The gateway's own view: parse two `/metrics` scrapes and turn them into per-variant deltas.

Series follow docs/contracts.md §3 (`sparsefleet_*`, labels `replica` and `variant`). Replicas of one variant
are summed. Histogram deltas give a mean (Δsum/Δcount) and quantiles interpolated linearly inside buckets, the
way Prometheus' `histogram_quantile` does, so they are only as fine as the gateway's buckets.
"""

from __future__ import annotations

import math
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

PREFIX = "sparsefleet_"
HISTOGRAMS = {
    "ttft": "sparsefleet_time_to_first_token_seconds",
    "itl": "sparsefleet_inter_token_latency_seconds",
    "tpot": "sparsefleet_time_per_output_token_seconds",
    "e2el": "sparsefleet_e2e_request_latency_seconds",
}
_REQUESTS = "sparsefleet_requests_total"
_PROMPT = "sparsefleet_prompt_tokens_total"
_GENERATION = "sparsefleet_generation_tokens_total"
_INFO = "sparsefleet_variant_info"

SampleKey = tuple[str, frozenset[tuple[str, str]]]
Scrape = dict[SampleKey, float]


def parse_scrape(text: str) -> Scrape:
    """All `sparsefleet_*` samples of a Prometheus text exposition, keyed by (sample name, labels)."""
    samples: Scrape = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith(PREFIX) and not s.name.endswith("_created"):
                samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Quantile q (0..1) from cumulative `(upper_bound, count)` buckets, Prometheus-style."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(
                upper
            ):  # falls in the overflow bucket: the best we can say is "above the last bound"
                return lower_bound
            if count == lower_count:
                return upper
            return lower_bound + (upper - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = upper, count
    return lower_bound


class HistogramDelta(BaseModel):
    count: int
    mean_ms: float | None
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None


class ServerDelta(BaseModel):
    """What the gateway counted for one variant between two scrapes."""

    variant: str
    replicas: list[str]
    requests: dict[str, float]
    prompt_tokens: float
    generation_tokens: float
    ttft: HistogramDelta | None = None
    itl: HistogramDelta | None = None
    tpot: HistogramDelta | None = None
    e2el: HistogramDelta | None = None


def variant_deltas(before: Scrape, after: Scrape) -> dict[str, ServerDelta]:
    """Per-variant deltas of the contract's counters and histograms between two scrapes."""
    delta = {key: _counter_delta(before.get(key, 0.0), value) for key, value in after.items()}
    variants: dict[str, dict] = defaultdict(
        lambda: {"replicas": set(), "requests": defaultdict(float), "prompt": 0.0, "generation": 0.0}
    )
    buckets: dict[tuple[str, str], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    sums: dict[tuple[str, str], float] = defaultdict(float)
    for (name, labelset), value in delta.items():
        labels = dict(labelset)
        variant = labels.get("variant")
        if variant is None:
            continue
        entry = variants[variant]
        if "replica" in labels:
            entry["replicas"].add(labels["replica"])
        if name == _REQUESTS:
            entry["requests"][labels.get("outcome", "unknown")] += value
        elif name == _PROMPT:
            entry["prompt"] += value
        elif name == _GENERATION:
            entry["generation"] += value
        for figure, base in HISTOGRAMS.items():
            if name == base + "_bucket":
                buckets[(variant, figure)][float(labels["le"])] += value
            elif name == base + "_sum":
                sums[(variant, figure)] += value
    result = {}
    for variant, entry in variants.items():
        hists = {
            figure: _histogram(buckets.get((variant, figure)), sums.get((variant, figure), 0.0))
            for figure in HISTOGRAMS
        }
        result[variant] = ServerDelta(
            variant=variant,
            replicas=sorted(entry["replicas"]),
            requests=dict(entry["requests"]),
            prompt_tokens=entry["prompt"],
            generation_tokens=entry["generation"],
            **hists,
        )
    return result


def variant_info(scrape: Scrape) -> dict[str, dict[str, str]]:
    """Labels of `sparsefleet_variant_info` per variant (method, pattern, perplexity, ...)."""
    info: dict[str, dict[str, str]] = {}
    for (name, labelset), _ in scrape.items():
        if name == _INFO:
            labels = dict(labelset)
            variant = labels.pop("variant", None)
            labels.pop("replica", None)
            if variant is not None:
                info.setdefault(variant, labels)
    return info


def _counter_delta(before: float, after: float) -> float:
    return after if after < before else after - before  # a drop means the counter was reset (gateway restart)


def _histogram(cumulative: dict[float, float] | None, total_sum: float) -> HistogramDelta | None:
    if not cumulative:
        return None
    pairs = sorted(cumulative.items())
    count = pairs[-1][1]
    if count <= 0:
        return HistogramDelta(count=0, mean_ms=None, p50_ms=None, p90_ms=None, p99_ms=None)

    def ms(q: float) -> float | None:
        value = histogram_quantile(q, pairs)
        return value * 1000 if value is not None else None

    return HistogramDelta(
        count=round(count), mean_ms=total_sum / count * 1000, p50_ms=ms(0.5), p90_ms=ms(0.9), p99_ms=ms(0.99)
    )
