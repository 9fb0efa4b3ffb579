"""Summaries of a phase's requests: latency distributions, throughputs, goodput and the SLO verdict.

Names follow `vllm bench serve` where the meaning is the same (ttft, tpot, itl, e2el in ms;
request_throughput, output_throughput, request_goodput). Percentiles interpolate linearly between closest
ranks, numpy's default and what `vllm bench serve` reports.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel

from loadtest.records import RequestRecord
from loadtest.slo import Slo


def percentile(samples: Sequence[float], pct: float) -> float:
    """The `pct`-th percentile (0..100) with linear interpolation (numpy's `method="linear"`)."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {pct}")
    ordered = sorted(samples)
    rank = pct / 100 * (len(ordered) - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


class Distribution(BaseModel):
    """Summary of one latency figure, in milliseconds."""

    count: int
    mean: float
    std: float
    min: float
    p50: float
    p90: float
    p99: float
    max: float


def distribution_ms(samples_s: Sequence[float]) -> Distribution | None:
    """Summarise latencies given in seconds as milliseconds; None when there are none."""
    if not samples_s:
        return None
    ms = [s * 1000.0 for s in samples_s]
    mean = sum(ms) / len(ms)
    std = math.sqrt(sum((x - mean) ** 2 for x in ms) / len(ms))  # population std, like np.std
    return Distribution(
        count=len(ms),
        mean=mean,
        std=std,
        min=min(ms),
        p50=percentile(ms, 50),
        p90=percentile(ms, 90),
        p99=percentile(ms, 99),
        max=max(ms),
    )


class ClientSummary(BaseModel):
    """Client-side view of one variant in one phase."""

    completed: int
    failed: int
    errors: dict[str, int]
    duration_s: float
    request_throughput: float
    output_throughput: float
    total_token_throughput: float | None
    request_goodput: float | None
    good_requests: int | None
    total_input_tokens: int | None
    total_output_tokens: int
    mean_output_tokens: float | None
    ttft_ms: Distribution | None
    tpot_ms: Distribution | None
    itl_ms: Distribution | None
    e2el_ms: Distribution | None


def summarise(records: Sequence[RequestRecord], duration_s: float, slo: Slo | None = None) -> ClientSummary:
    """Aggregate a phase. `duration_s` is its wall time (first send to last answer)."""
    if duration_s <= 0:
        raise ValueError("duration_s must be > 0")
    done = [r for r in records if r.ok]
    out_tokens = sum(r.output_tokens for r in done)
    prompt_counts = [r.prompt_tokens for r in done]
    in_tokens = sum(prompt_counts) if done and all(p is not None for p in prompt_counts) else None
    good = sum(request_is_good(r, slo) for r in done) if slo is not None else None
    return ClientSummary(
        completed=len(done),
        failed=len(records) - len(done),
        errors=dict(Counter(r.error for r in records if not r.ok)),
        duration_s=duration_s,
        request_throughput=len(done) / duration_s,
        output_throughput=out_tokens / duration_s,
        total_token_throughput=(in_tokens + out_tokens) / duration_s if in_tokens is not None else None,
        request_goodput=good / duration_s if good is not None else None,
        good_requests=good,
        total_input_tokens=in_tokens,
        total_output_tokens=out_tokens,
        mean_output_tokens=out_tokens / len(done) if done else None,
        ttft_ms=distribution_ms([r.ttft_s for r in done if r.ttft_s is not None]),
        tpot_ms=distribution_ms([t for r in done if (t := r.tpot_s) is not None]),
        itl_ms=distribution_ms([gap for r in done for gap in r.itl_s]),
        e2el_ms=distribution_ms([r.e2el_s for r in done if r.e2el_s is not None]),
    )


def request_is_good(record: RequestRecord, slo: Slo) -> bool:
    """Whether one successful request met every objective (per request: its TTFT, mean ITL, TPOT, e2e)."""
    if not record.ok:
        return False
    own = {
        "ttft": record.ttft_s,
        "itl": record.itl_mean_s or 0.0,
        "tpot": record.tpot_s or 0.0,
        "e2el": record.e2el_s,
    }
    return all(own[name] is not None and own[name] <= limit for name, limit in slo.objectives().items())


class SloVerdict(BaseModel):
    meets: bool
    error_fraction: float
    observed_s: dict[str, float | None]  # the pct-th percentile of each figure with an objective
    objectives_s: dict[str, float]
    pct: float


def check_slo(records: Sequence[RequestRecord], slo: Slo) -> SloVerdict:
    """Does this load level meet the SLO? P`pct` of each figure within its objective, and at most
    (100 - pct)% of the requests failed (so overload answered with 429s does not pass)."""
    done = [r for r in records if r.ok]
    pools: dict[str, list[float]] = {
        "ttft": [r.ttft_s for r in done if r.ttft_s is not None],
        "itl": [gap for r in done for gap in r.itl_s],
        "tpot": [t for r in done if (t := r.tpot_s) is not None],
        "e2el": [r.e2el_s for r in done if r.e2el_s is not None],
    }
    objectives = slo.objectives()
    observed = {k: (percentile(pools[k], slo.pct) if pools[k] else None) for k in objectives}
    error_fraction = (len(records) - len(done)) / len(records) if records else 1.0
    within = all(observed[k] is not None and observed[k] <= v for k, v in objectives.items())
    meets = bool(done) and within and error_fraction <= (100.0 - slo.pct) / 100.0 + 1e-12
    return SloVerdict(
        meets=meets, error_fraction=error_fraction, observed_s=observed, objectives_s=objectives, pct=slo.pct
    )
