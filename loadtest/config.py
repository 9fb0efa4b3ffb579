"""The frozen configuration of one load test, validated before anything is sent."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from loadtest.fleet import TrafficPlan
from loadtest.profiles import Profile
from loadtest.slo import Slo
from loadtest.workloads import WorkloadSpec

Mode = Literal["sequential", "interleaved"]


class Bounds(BaseModel):
    """Every phase stops by itself: no new request after `duration_s` (or `max_requests`), and whatever still
    runs `drain_s` later is cancelled and counted as such."""

    model_config = ConfigDict(frozen=True)

    duration_s: float = Field(default=30.0, gt=0, le=86_400, description="issuing window of one phase")
    max_requests: int | None = Field(default=None, gt=0, description="per variant and phase")
    warmup_requests: int = Field(default=2, ge=0, le=1000, description="per variant, unmeasured")
    request_timeout_s: float = Field(default=60.0, gt=0)
    drain_s: float = Field(default=30.0, ge=0, description="grace for in-flight requests after the window")


class RunConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    url: str
    variants: tuple[str, ...] = Field(min_length=1)
    baseline: str | None = Field(default=None, description="default: the first variant")
    endpoint: Literal["completions", "chat"] = "completions"
    mode: Mode = "sequential"
    profile: Profile
    workload: WorkloadSpec
    bounds: Bounds = Bounds()
    slo: Slo | None = None
    ignore_eos: bool = True
    api_key: SecretStr | None = Field(default=None, description="Bearer token, where the gateway wants one")
    plan: TrafficPlan | None = Field(default=None, description="fleet sizing at the end of the run")
    output_dir: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        if len(set(self.variants)) != len(self.variants):
            raise ValueError("variants must be distinct")
        if any(not v.strip() for v in self.variants):
            raise ValueError("variant names must not be empty")
        if self.baseline is not None and self.baseline not in self.variants:
            raise ValueError(f"baseline {self.baseline!r} is not one of the variants")
        return self

    @property
    def baseline_variant(self) -> str:
        return self.baseline or self.variants[0]
