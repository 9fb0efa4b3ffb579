"""Percentiles, distributions, rates and goodput, checked against numpy on known samples."""

import numpy as np
import pytest

from loadtest.records import RequestRecord
from loadtest.slo import Slo
from loadtest.stats import check_slo, distribution_ms, percentile, request_is_good, summarise


@pytest.mark.parametrize("pct", [0, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 100])
@pytest.mark.parametrize("n", [1, 2, 7, 100, 1001])
def test_percentile_matches_numpy(pct, n):
    samples = np.random.default_rng(n).lognormal(mean=-3, sigma=1, size=n).tolist()
    assert percentile(samples, pct) == pytest.approx(np.percentile(samples, pct), rel=1e-12)


def test_percentile_on_hand_computed_samples():
    assert percentile([4, 1, 3, 2], 50) == 2.5  # order does not matter
    assert percentile([1, 2, 3, 4], 90) == pytest.approx(3.7)
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 90) == 10.0
    assert percentile([5.0], 99) == 5.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_distribution_in_ms_matches_numpy():
    samples = np.random.default_rng(3).gamma(2.0, 0.05, size=500)
    d = distribution_ms(samples.tolist())
    ms = samples * 1000
    assert d.count == 500
    assert d.mean == pytest.approx(ms.mean())
    assert d.std == pytest.approx(ms.std())  # population std, as vllm bench serve (np.std)
    assert (d.min, d.max) == pytest.approx((ms.min(), ms.max()))
    assert (d.p50, d.p90, d.p99) == pytest.approx(tuple(np.percentile(ms, [50, 90, 99])))
    assert distribution_ms([]) is None


def _ok(index, ttft, gaps, tokens, prompt_tokens=10):
    e2el = ttft + sum(gaps)
    return RequestRecord(
        index=index,
        variant="v",
        scheduled_s=index * 0.1,
        start_s=index * 0.1,
        ttft_s=ttft,
        e2el_s=e2el,
        itl_s=gaps,
        output_tokens=tokens,
        prompt_tokens=prompt_tokens,
    )


@pytest.fixture()
def records():
    return [
        _ok(0, 0.10, [0.02, 0.02, 0.02], 4),
        _ok(1, 0.20, [0.03, 0.05, 0.04], 4),
        _ok(2, 0.50, [0.02, 0.02, 0.02], 4),
        _ok(3, 0.05, [], 1),
        RequestRecord(
            index=4, variant="v", scheduled_s=0.4, start_s=0.4, error="rejected", message="HTTP 429"
        ),
    ]


def test_summarise_rates_errors_and_latencies(records):
    s = summarise(records, duration_s=2.0)
    assert (s.completed, s.failed, s.errors) == (4, 1, {"rejected": 1})
    assert s.request_throughput == pytest.approx(4 / 2.0)
    assert s.output_throughput == pytest.approx(13 / 2.0)
    assert s.total_input_tokens == 40 and s.total_token_throughput == pytest.approx(53 / 2.0)
    assert s.mean_output_tokens == pytest.approx(13 / 4)
    ttfts = np.array([0.10, 0.20, 0.50, 0.05]) * 1000
    assert s.ttft_ms.mean == pytest.approx(ttfts.mean()) and s.ttft_ms.p90 == pytest.approx(
        np.percentile(ttfts, 90)
    )
    # TPOT as vllm bench serve: (e2e - ttft) / (tokens - 1), requests with one token left out
    tpots = np.array([0.06 / 3, 0.12 / 3, 0.06 / 3]) * 1000
    assert s.tpot_ms.count == 3 and s.tpot_ms.mean == pytest.approx(tpots.mean())
    gaps = np.array([0.02, 0.02, 0.02, 0.03, 0.05, 0.04, 0.02, 0.02, 0.02]) * 1000
    assert s.itl_ms.count == 9 and s.itl_ms.p50 == pytest.approx(np.percentile(gaps, 50))
    assert s.request_goodput is None  # no SLO, no goodput


def test_goodput_counts_requests_meeting_every_objective(records):
    slo = Slo(ttft=0.3, itl=0.035)  # request 1 misses ITL (mean 40 ms), request 2 misses TTFT
    assert [request_is_good(r, slo) for r in records] == [True, False, False, True, False]
    s = summarise(records, duration_s=2.0, slo=slo)
    assert s.good_requests == 2 and s.request_goodput == pytest.approx(1.0)


def test_load_level_slo_verdict(records):
    # P50 TTFT over the 4 successes is 150 ms; 1 of 5 failed = 20% > the 10% a P90 objective tolerates
    verdict = check_slo(records, Slo(ttft=0.2, pct=50))
    assert verdict.observed_s["ttft"] == pytest.approx(0.15)
    assert verdict.error_fraction == pytest.approx(0.2)
    assert verdict.meets is True  # a P50 objective tolerates 50% failures
    assert check_slo(records, Slo(ttft=0.2, pct=90)).meets is False  # P90 TTFT is 410 ms, and 20% failed
    assert (
        check_slo(records[:4], Slo(ttft=0.40, pct=90)).meets is False
    )  # no failures, but P90 TTFT is 410 ms
    assert check_slo(records[:4], Slo(ttft=0.42, pct=90)).meets is True
    assert check_slo([], Slo(ttft=1.0)).meets is False
