"""Fleet arithmetic on the worked example of docs/loadtest.md, and its edge cases."""

import pytest
from pydantic import ValidationError

from loadtest.fleet import TrafficPlan, VariantCapacity, gpus_curve, replicas_needed, size_fleet


def worked_example():
    plan = TrafficPlan(
        requests_per_day=1_000_000,
        peak_to_mean=3.0,
        output_tokens_per_request=200,
        gpu_price_per_hour=2.50,
        gpus_per_replica=1,
    )
    caps = [
        VariantCapacity(variant="dense", rps_per_replica=4.0, perplexity=24.46),
        VariantCapacity(variant="sparse-2:4", rps_per_replica=5.0, perplexity=159.6),
    ]
    return size_fleet(plan, caps, baseline="dense")


def test_worked_example_from_the_docs():
    report = worked_example()
    assert report.mean_rps == pytest.approx(11.574, abs=1e-3)
    assert report.peak_rps == pytest.approx(34.722, abs=1e-3)
    assert report.output_tokens_per_month == pytest.approx(6_083_333_333, rel=1e-9)
    dense, sparse = report.lines
    assert (dense.replicas, dense.gpus, dense.gpu_hours_per_month) == (9, 9, 6570)
    assert (dense.cost_per_month, dense.cost_per_year) == pytest.approx((16_425.0, 197_100.0))
    assert dense.cost_per_million_output_tokens == pytest.approx(2.70, abs=0.005)
    assert (sparse.replicas, sparse.gpus, sparse.gpu_hours_per_month) == (7, 7, 5110)
    assert (sparse.cost_per_month, sparse.cost_per_year) == pytest.approx((12_775.0, 153_300.0))
    assert sparse.cost_per_million_output_tokens == pytest.approx(2.10, abs=0.005)
    assert sparse.saving_per_month == pytest.approx(3_650.0)
    assert sparse.saving_fraction == pytest.approx(2 / 9)
    assert sparse.perplexity_delta == pytest.approx(135.14)
    assert dense.saving_per_month == 0 and dense.perplexity_delta == 0


def test_slower_variant_costs_more_and_a_failed_one_has_no_fleet():
    plan = TrafficPlan(requests_per_second=10, gpus_per_replica=2, gpu_price_per_hour=1.0)
    caps = [
        VariantCapacity(variant="dense", rps_per_replica=2.5, output_tokens_per_request=64),
        VariantCapacity(variant="slow", rps_per_replica=2.0),
        VariantCapacity(variant="broken", rps_per_replica=0.0),
    ]
    dense, slow, broken = size_fleet(plan, caps, "dense").lines
    assert (dense.replicas, dense.gpus) == (4, 8) and (slow.replicas, slow.gpus) == (5, 10)
    assert slow.saving_per_month == pytest.approx(-2 * 730.0) and slow.saving_fraction == pytest.approx(-0.25)
    assert broken.replicas is None and broken.cost_per_month is None and broken.saving_per_month is None
    # the baseline's measured tokens/request price every variant's tokens: 10 req/s × 64 tok × 730 h × 3600 s
    assert dense.cost_per_million_output_tokens == pytest.approx(8 * 730 / (10 * 64 * 730 * 3600 / 1e6))


def test_replicas_round_up_but_not_for_float_noise():
    assert replicas_needed(34.0000000001, 4.25) == 8
    assert replicas_needed(34.1, 4.25) == 9
    assert replicas_needed(0.001, 4.0) == 1
    assert replicas_needed(1.0, 0.0) is None
    assert gpus_curve(2.0, 2, [1.0, 4.0, 4.1]) == [2, 4, 6]


def test_plan_validation():
    with pytest.raises(ValidationError, match="exactly one"):
        TrafficPlan(requests_per_day=10, requests_per_second=1)
    with pytest.raises(ValidationError, match="exactly one"):
        TrafficPlan()
    with pytest.raises(ValidationError):
        TrafficPlan(requests_per_day=10, peak_to_mean=0.5)
