"""Load profiles as validated models with a `kind` tag, and the arrival schedules they produce.

- `concurrency`: a closed loop, N requests in flight at all times.
- `constant`: an open loop, one request every 1/rate seconds.
- `poisson`: an open loop with exponential gaps (seeded), mean rate `rate`.
- `sweep`: a throughput probe at fixed concurrency, then open-loop steps at rising rates up to just above the
  fastest variant's probe throughput; each variant's capacity is the highest rate whose latency percentiles
  meet the SLO (like GuideLLM's sweep). Every variant gets the same rates and the same arrival times.
"""

from __future__ import annotations

import random
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ConcurrencyProfile(BaseModel):
    model_config = ConfigDict(frozen=True)
    kind: Literal["concurrency"] = "concurrency"
    concurrency: int = Field(default=4, gt=0, le=4096)


class ConstantRateProfile(BaseModel):
    model_config = ConfigDict(frozen=True)
    kind: Literal["constant"] = "constant"
    rate: float = Field(gt=0, description="requests per second")


class PoissonProfile(BaseModel):
    model_config = ConfigDict(frozen=True)
    kind: Literal["poisson"] = "poisson"
    rate: float = Field(gt=0, description="mean requests per second")
    seed: int = 0


class SweepProfile(BaseModel):
    model_config = ConfigDict(frozen=True)
    kind: Literal["sweep"] = "sweep"
    rates: tuple[float, ...] | None = Field(default=None, description="explicit rates (req/s); else probed")
    steps: int = Field(default=5, ge=2, le=50)
    arrivals: Literal["constant", "poisson"] = "poisson"
    probe_concurrency: int = Field(default=4, gt=0, le=4096)
    headroom: float = Field(default=1.1, ge=1.0, le=4.0, description="top rate = probe throughput × headroom")
    seed: int = 0

    @model_validator(mode="after")
    def _rates_positive(self) -> SweepProfile:
        if self.rates is not None and (not self.rates or any(r <= 0 for r in self.rates)):
            raise ValueError("sweep rates must be a non-empty list of positive numbers")
        return self


Profile = Annotated[
    ConcurrencyProfile | ConstantRateProfile | PoissonProfile | SweepProfile, Field(discriminator="kind")
]


class LoadStep(BaseModel):
    """One concrete load level: closed loop (`concurrency`) or open loop (`rate` with its `arrivals`)."""

    model_config = ConfigDict(frozen=True)
    step: int
    label: str
    concurrency: int | None = None
    rate: float | None = None
    arrivals_s: tuple[float, ...] | None = None


def arrival_offsets(
    rate: float,
    kind: Literal["constant", "poisson"],
    duration_s: float,
    max_requests: int | None,
    seed: int = 0,
) -> tuple[float, ...]:
    """Send times (s from the start) of an open loop: arrivals before `duration_s`, at most `max_requests`."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be > 0")
    rng = random.Random(seed)
    times: list[float] = []
    t = 0.0
    while t < duration_s and (max_requests is None or len(times) < max_requests):
        times.append(t)
        t += rng.expovariate(rate) if kind == "poisson" else 1.0 / rate
    return tuple(times)


def fixed_step(
    profile: ConcurrencyProfile | ConstantRateProfile | PoissonProfile,
    duration_s: float,
    max_requests: int | None,
) -> LoadStep:
    """The single load step of a non-sweep profile."""
    if isinstance(profile, ConcurrencyProfile):
        return LoadStep(step=0, label=f"concurrency {profile.concurrency}", concurrency=profile.concurrency)
    seed = profile.seed if isinstance(profile, PoissonProfile) else 0
    arrivals = arrival_offsets(profile.rate, profile.kind, duration_s, max_requests, seed)
    return LoadStep(
        step=0, label=f"{profile.kind} {profile.rate:g} req/s", rate=profile.rate, arrivals_s=arrivals
    )


def probe_step(profile: SweepProfile) -> LoadStep:
    return LoadStep(
        step=0, label=f"probe: concurrency {profile.probe_concurrency}", concurrency=profile.probe_concurrency
    )


def sweep_rates(profile: SweepProfile, probe_throughput: float | None) -> list[float]:
    """Explicit rates, or `steps` evenly spaced rates up to probe throughput × headroom."""
    if profile.rates is not None:
        return sorted(profile.rates)
    if not probe_throughput or probe_throughput <= 0:
        return []
    top = probe_throughput * profile.headroom
    return [top * (i + 1) / profile.steps for i in range(profile.steps)]


def sweep_steps(
    profile: SweepProfile, rates: list[float], duration_s: float, max_requests: int | None
) -> list[LoadStep]:
    """Open-loop steps at `rates`, numbered after the probe (step 0)."""
    return [
        LoadStep(
            step=i + 1,
            label=f"{profile.arrivals} {rate:.3g} req/s",
            rate=rate,
            arrivals_s=arrival_offsets(rate, profile.arrivals, duration_s, max_requests, profile.seed),
        )
        for i, rate in enumerate(rates)
    ]
