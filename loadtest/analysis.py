"""Turns phase outcomes into the result's figures: capacity at the SLO per variant, and ratios."""

from __future__ import annotations

from collections.abc import Sequence

from loadtest.fleet import VariantCapacity
from loadtest.result import Capacity, PhaseResult, Ratio, RunResult, VariantInfo
from loadtest.server_metrics import HistogramDelta


def figures(phase: PhaseResult) -> dict[str, float | None]:
    """The flat set of comparable figures of one phase (client side, then `server.*`)."""
    c = phase.client
    out: dict[str, float | None] = {
        "completed": c.completed,
        "request_throughput": c.request_throughput,
        "output_throughput": c.output_throughput,
        "request_goodput": c.request_goodput,
    }
    for name in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"):
        dist = getattr(c, name)
        for stat in ("mean", "p50", "p90", "p99"):
            out[f"{name}.{stat}"] = getattr(dist, stat) if dist is not None else None
    s = phase.server
    if s is not None:
        out["server.requests_success"] = s.requests.get("success")
        out["server.generation_tokens"] = s.generation_tokens
        for name in ("ttft", "tpot", "itl", "e2el"):
            hist: HistogramDelta | None = getattr(s, name)
            for stat in ("mean_ms", "p50_ms", "p90_ms", "p99_ms"):
                out[f"server.{name}.{stat}"] = getattr(hist, stat) if hist is not None else None
    return out


def ratios(phases: Sequence[PhaseResult], baseline: str) -> list[Ratio]:
    """variant ÷ baseline for every figure, at every step where both were measured."""
    out = []
    base_by_step = {p.step: p for p in phases if p.variant == baseline}
    for phase in phases:
        base = base_by_step.get(phase.step)
        if phase.variant == baseline or base is None:
            continue
        mine, theirs = figures(phase), figures(base)
        out.append(
            Ratio(
                variant=phase.variant,
                baseline=baseline,
                step=phase.step,
                figures={k: _ratio(v, theirs.get(k)) for k, v in mine.items()},
            )
        )
    return out


def capacities(phases: Sequence[PhaseResult], variants: Sequence[VariantInfo], sweep: bool) -> list[Capacity]:
    """Requests/s each variant sustains at the SLO, and per replica.

    - sweep: the highest offered rate whose step met the SLO (without an SLO: the highest throughput seen);
    - one load level: its throughput if it met the SLO (a lower bound: the level may be below saturation),
      or its throughput without an SLO; zero if it missed the SLO (capacity unknown, below this load).
    """
    out = []
    for info in variants:
        mine = [p for p in phases if p.variant == info.name]
        rps, source, step, note = _capacity(mine, sweep)
        out.append(
            Capacity(
                variant=info.name,
                rps=rps,
                rps_per_replica=rps / max(info.replicas, 1),
                source=source,
                step=step,
                note=note,
            )
        )
    return out


def variant_capacities(result: RunResult) -> list[VariantCapacity]:
    """Fleet-sizing inputs of a result: capacity per replica, output tokens per request at the headline
    step, and perplexity, per variant."""
    head = result.headline_step()
    tokens = {p.variant: p.client.mean_output_tokens for p in result.phases if p.step == head}
    return [
        VariantCapacity(
            variant=c.variant,
            rps_per_replica=c.rps_per_replica,
            output_tokens_per_request=tokens.get(c.variant),
            perplexity=result.variant(c.variant).perplexity,
        )
        for c in result.capacities
    ]


def _capacity(phases: list[PhaseResult], sweep: bool) -> tuple[float, str, int | None, str]:
    if not phases:
        return 0.0, "slo_not_met", None, "not measured"
    has_slo = phases[0].slo is not None
    if not has_slo:
        best = max(phases, key=lambda p: p.client.request_throughput)
        return (
            best.client.request_throughput,
            "throughput",
            best.step,
            "highest measured throughput (no SLO given)",
        )
    if sweep:
        passing = [p for p in phases if p.offered_rate is not None and p.slo is not None and p.slo.meets]
        if not passing:
            return 0.0, "slo_not_met", None, "no swept rate met the SLO"
        best = max(passing, key=lambda p: p.offered_rate or 0.0)
        top_rate = max(p.offered_rate or 0.0 for p in phases)
        note = f"highest swept rate meeting the SLO ({best.label})"
        if best.offered_rate == top_rate:
            note += "; it was the highest rate tried, so the limit may be higher (give higher --rates)"
        return best.offered_rate or 0.0, "sweep", best.step, note
    phase = phases[0]
    if phase.slo is not None and phase.slo.meets:
        return (
            phase.client.request_throughput,
            "measured",
            phase.step,
            f"throughput at {phase.label}, which met the SLO (a lower bound; a sweep finds the limit)",
        )
    return 0.0, "slo_not_met", phase.step, f"missed the SLO at {phase.label}; capacity is below this load"


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return value / base
