"""The versioned result schema (`result.json`). Bump SCHEMA_VERSION on any incompatible change."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from loadtest.fleet import FleetReport
from loadtest.records import RequestRecord
from loadtest.server_metrics import ServerDelta
from loadtest.stats import ClientSummary, SloVerdict

SCHEMA_VERSION = 1
RESULT_KIND = "sparsefleet-loadtest-result"


class VariantInfo(BaseModel):
    """A variant as the gateway describes it (`sparsefleet_variant_info`); unknowns stay None."""

    name: str
    replicas: int = Field(default=1, description="replicas serving it; capacity is divided by this")
    method: str | None = None
    pattern: str | None = None
    sparsity: float | None = None
    quantization: str | None = None
    perplexity: float | None = None
    dense_perplexity: float | None = None


class PhaseResult(BaseModel):
    """One variant at one load step."""

    variant: str
    step: int
    label: str
    kind: Literal["concurrency", "rate"]
    concurrency: int | None = None
    offered_rate: float | None = None
    started_at: float
    client: ClientSummary
    server: ServerDelta | None = Field(default=None, description="None: no sparsefleet_ metrics for it")
    slo: SloVerdict | None = None
    requests: list[RequestRecord] = Field(default_factory=list)


class Capacity(BaseModel):
    variant: str
    rps: float = Field(description="requests/s the variant (all its replicas) sustains")
    rps_per_replica: float
    source: Literal["sweep", "measured", "throughput", "slo_not_met"]
    step: int | None = None
    note: str


class Ratio(BaseModel):
    """variant ÷ baseline for each figure, at one step of the same run."""

    variant: str
    baseline: str
    step: int
    figures: dict[str, float | None]


class RunResult(BaseModel):
    schema_version: int = SCHEMA_VERSION
    kind: str = RESULT_KIND
    created_at: str
    command: str
    versions: dict[str, str]
    loadavg_before: tuple[float, float, float]
    loadavg_after: tuple[float, float, float]
    url: str
    endpoint: str
    mode: str
    baseline: str
    variants: list[VariantInfo]
    workload: dict[str, Any]
    profile: dict[str, Any]
    bounds: dict[str, Any]
    slo: dict[str, Any] | None
    phases: list[PhaseResult]
    capacities: list[Capacity]
    ratios: list[Ratio]
    fleet: FleetReport | None = None
    notes: list[str] = Field(default_factory=list)

    def variant(self, name: str) -> VariantInfo:
        return next(v for v in self.variants if v.name == name)

    def headline_step(self) -> int:
        """The step the summary compares on: the only one, or a sweep's closed-loop probe (the same fixed
        concurrency for every variant, so throughput and latency are compared under equal pressure)."""
        return min(p.step for p in self.phases)
