"""Fleet sizing and cost: the replicas (and GPUs) each variant needs for a target load, and what they cost.

The arithmetic (worked example in docs/loadtest.md, unit-tested in tests/loadtest/test_fleet.py):

    mean_rps      = requests_per_day / 86 400          (or given directly as requests_per_second)
    peak_rps      = mean_rps × peak_to_mean
    replicas      = ceil(peak_rps / capacity_per_replica)   (capacity measured at the SLO)
    gpus          = replicas × gpus_per_replica
    gpu_hours/mo  = gpus × hours_per_month             (730 h = 8760 h / 12; the fleet is sized for the peak
                                                        and runs around the clock, no autoscaling)
    cost/mo       = gpu_hours/mo × gpu_price_per_hour,   cost/yr = 12 × cost/mo
    tokens/mo     = mean_rps × output_tokens_per_request × hours_per_month × 3600
    cost/M tokens = cost/mo / (tokens/mo / 1e6)
    saving        = cost/mo(baseline) − cost/mo(variant), and as a fraction of the baseline's cost

The quality cost sits next to the saving: the variant's perplexity minus the baseline's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, Field, model_validator

from loadtest.errors import LoadTestError

SECONDS_PER_DAY = 86_400.0


class TrafficPlan(BaseModel):
    """The load to size for and the price of the hardware. Give exactly one of the two request rates."""

    requests_per_day: float | None = Field(default=None, gt=0)
    requests_per_second: float | None = Field(default=None, gt=0)
    peak_to_mean: float = Field(default=1.0, ge=1.0, description="peak load ÷ mean load")
    output_tokens_per_request: float | None = Field(
        default=None, gt=0, description="default: the mean measured in the run"
    )
    gpu_price_per_hour: float = Field(default=2.0, ge=0, description="price of one GPU-hour")
    gpus_per_replica: int = Field(default=1, gt=0)
    hours_per_month: float = Field(default=730.0, gt=0)

    @model_validator(mode="after")
    def _one_rate(self) -> TrafficPlan:
        if (self.requests_per_day is None) == (self.requests_per_second is None):
            raise ValueError("give exactly one of requests_per_day or requests_per_second")
        return self

    @property
    def mean_rps(self) -> float:
        if self.requests_per_second is not None:
            return self.requests_per_second
        return (self.requests_per_day or 0.0) / SECONDS_PER_DAY  # the validator guarantees one is set

    @property
    def peak_rps(self) -> float:
        return self.mean_rps * self.peak_to_mean


class VariantCapacity(BaseModel):
    """What one replica of a variant sustains at the SLO (0 = it never met the SLO)."""

    variant: str
    rps_per_replica: float = Field(ge=0)
    output_tokens_per_request: float | None = None
    perplexity: float | None = None


class FleetLine(BaseModel):
    variant: str
    rps_per_replica: float
    replicas: int | None = Field(description="None: this variant cannot meet the SLO at any load")
    gpus: int | None
    gpu_hours_per_month: float | None
    cost_per_month: float | None
    cost_per_year: float | None
    cost_per_million_output_tokens: float | None
    saving_per_month: float | None = Field(description="baseline's cost − this variant's cost")
    saving_fraction: float | None
    perplexity: float | None
    perplexity_delta: float | None = Field(description="this variant's perplexity − the baseline's")


class FleetReport(BaseModel):
    plan: TrafficPlan
    baseline: str
    mean_rps: float
    peak_rps: float
    output_tokens_per_request: float | None
    output_tokens_per_month: float | None
    lines: list[FleetLine]


def replicas_needed(peak_rps: float, rps_per_replica: float) -> int | None:
    """Replicas to carry `peak_rps`; None when a replica carries nothing at the SLO."""
    if rps_per_replica <= 0:
        return None
    # The tolerance keeps 34.0000000001 / 4.25 from becoming 9 replicas instead of 8.
    return max(1, math.ceil(peak_rps / rps_per_replica - 1e-9))


def size_fleet(plan: TrafficPlan, capacities: Sequence[VariantCapacity], baseline: str) -> FleetReport:
    """One line per variant, savings and quality deltas against `baseline`."""
    by_name = {c.variant: c for c in capacities}
    if baseline not in by_name:
        raise LoadTestError(f"baseline {baseline!r} is not among the variants: {', '.join(by_name)}")
    base = by_name[baseline]
    tokens = plan.output_tokens_per_request or base.output_tokens_per_request
    tokens_month = plan.mean_rps * tokens * plan.hours_per_month * 3600 if tokens else None
    lines = [_line(plan, c, tokens_month) for c in capacities]
    base_line = next(line for line in lines if line.variant == baseline)
    for line in lines:
        if line.cost_per_month is not None and base_line.cost_per_month is not None:
            line.saving_per_month = base_line.cost_per_month - line.cost_per_month
            line.saving_fraction = (
                line.saving_per_month / base_line.cost_per_month if base_line.cost_per_month > 0 else None
            )
        if line.perplexity is not None and base.perplexity is not None:
            line.perplexity_delta = line.perplexity - base.perplexity
    return FleetReport(
        plan=plan,
        baseline=baseline,
        mean_rps=plan.mean_rps,
        peak_rps=plan.peak_rps,
        output_tokens_per_request=tokens,
        output_tokens_per_month=tokens_month,
        lines=lines,
    )


def _line(plan: TrafficPlan, cap: VariantCapacity, tokens_month: float | None) -> FleetLine:
    replicas = replicas_needed(plan.peak_rps, cap.rps_per_replica)
    gpus = replicas * plan.gpus_per_replica if replicas is not None else None
    hours = gpus * plan.hours_per_month if gpus is not None else None
    month = hours * plan.gpu_price_per_hour if hours is not None else None
    per_million = month / (tokens_month / 1e6) if month is not None and tokens_month else None
    return FleetLine(
        variant=cap.variant,
        rps_per_replica=cap.rps_per_replica,
        replicas=replicas,
        gpus=gpus,
        gpu_hours_per_month=hours,
        cost_per_month=month,
        cost_per_year=month * 12 if month is not None else None,
        cost_per_million_output_tokens=per_million,
        saving_per_month=None,
        saving_fraction=None,
        perplexity=cap.perplexity,
        perplexity_delta=None,
    )


def gpus_curve(rps_per_replica: float, gpus_per_replica: int, peak_rps: Sequence[float]) -> list[int | None]:
    """GPUs needed at each peak load (for the 'GPUs vs traffic' plot)."""
    out = []
    for rps in peak_rps:
        replicas = replicas_needed(rps, rps_per_replica)
        out.append(replicas * gpus_per_replica if replicas is not None else None)
    return out
