"""One load test from configuration to result: discover, warm up, drive each step, analyse, size the fleet."""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata

from loadtest.analysis import capacities, ratios, variant_capacities
from loadtest.client import GatewayClient
from loadtest.config import RunConfig
from loadtest.errors import LoadTestError
from loadtest.fleet import size_fleet
from loadtest.profiles import SweepProfile, fixed_step, probe_step, sweep_rates, sweep_steps
from loadtest.result import PhaseResult, RunResult, VariantInfo
from loadtest.runner import Observer, PhaseOutcome, Runner
from loadtest.server_metrics import Scrape, parse_scrape, variant_info
from loadtest.stats import check_slo, summarise
from loadtest.workloads import RequestSpec, build_workload


async def run_load_test(
    config: RunConfig, *, observer: Observer | None = None, command: str = ""
) -> RunResult:
    workload = build_workload(config.workload)
    if config.endpoint == "completions" and any(spec.messages for spec in workload):
        raise LoadTestError("the prompt file has chat `messages`; use --endpoint chat")
    loadavg_before = os.getloadavg()
    notes: list[str] = []
    async with GatewayClient(
        config.url,
        endpoint=config.endpoint,
        ignore_eos=config.ignore_eos,
        request_timeout_s=config.bounds.request_timeout_s,
        api_key=config.api_key.get_secret_value() if config.api_key else None,
    ) as client:
        await client.check_variants(list(config.variants))
        scrape_text = await client.scrape()
        scrape = parse_scrape(scrape_text) if scrape_text else {}
        if not scrape:
            notes.append(
                f"{config.url}/metrics has no sparsefleet_ series: the server-side columns are empty "
                "(a plain vLLM server, not the gateway?)"
            )
        infos = describe_variants(config.variants, scrape)
        filled = fill_dense_perplexity(infos)
        if filled:
            notes.append(filled)
        runner = Runner(client, workload, config.bounds, observer)
        if observer is not None and config.bounds.warmup_requests:
            observer.note(f"warming up {', '.join(config.variants)} at {config.url} ...")
        await runner.warm_up(config.variants)
        outcomes = await _drive_profile(runner, config, notes)
    phases = [_phase(o, config) for o in outcomes]
    notes.extend(output_shortfall(phases, workload))
    busy = busy_machine_note(loadavg_before, os.getloadavg(), config.mode)
    if busy:
        notes.append(busy)
    caps = capacities(phases, infos, sweep=isinstance(config.profile, SweepProfile))
    baseline = config.baseline_variant
    for phase in phases:
        if phase.client.failed:
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(phase.client.errors.items()))
            notes.append(f"{phase.variant} at {phase.label}: {phase.client.failed} failed requests ({kinds})")
    result = RunResult(
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        command=command,
        versions=_versions(),
        loadavg_before=loadavg_before,
        loadavg_after=os.getloadavg(),
        url=config.url,
        endpoint=config.endpoint,
        mode=config.mode,
        baseline=baseline,
        variants=infos,
        workload=config.workload.model_dump(mode="json"),
        profile=config.profile.model_dump(mode="json"),
        bounds=config.bounds.model_dump(mode="json"),
        slo=config.slo.model_dump(mode="json") if config.slo else None,
        phases=phases,
        capacities=caps,
        ratios=ratios(phases, baseline),
        notes=notes,
    )
    if config.plan is not None:
        result.fleet = size_fleet(config.plan, variant_capacities(result), baseline)
    return result


def describe_variants(names: tuple[str, ...] | list[str], scrape: Scrape) -> list[VariantInfo]:
    """Variant metadata from `sparsefleet_variant_info` and replica counts from `sparsefleet_replica_up`."""
    info = variant_info(scrape)
    replicas: dict[str, set[str]] = {}  # the replicas up when the run starts: they carry its load
    for (name, labelset), value in scrape.items():
        labels = dict(labelset)
        if name == "sparsefleet_replica_up" and "variant" in labels and value == 1:
            replicas.setdefault(labels["variant"], set()).add(labels.get("replica", ""))
    out = []
    for name in names:
        labels = info.get(name, {})
        out.append(
            VariantInfo(
                name=name,
                replicas=max(1, len(replicas.get(name, ()))),
                method=_text(labels.get("method")),
                pattern=_text(labels.get("pattern")),
                sparsity=_number(labels.get("sparsity")),
                quantization=_quantization(labels.get("quantization")),
                perplexity=_number(labels.get("perplexity")),
                dense_perplexity=_number(labels.get("dense_perplexity")),
            )
        )
    return out


def with_perplexities(result: RunResult, perplexities: dict[str, float], note: str) -> RunResult:
    """The result with perplexities measured after the run (the demo's own evaluation) and its fleet
    table recomputed so the quality deltas use them."""
    updated = result.model_copy(deep=True)
    for info in updated.variants:
        if info.name in perplexities:
            info.perplexity = perplexities[info.name]
    updated.notes.append(note)
    if updated.fleet is not None:
        updated.fleet = size_fleet(updated.fleet.plan, variant_capacities(updated), updated.baseline)
    return updated


def fill_dense_perplexity(infos: list[VariantInfo]) -> str | None:
    """An unpruned variant usually has no prune_report.json, but the pruned ones record the dense model's
    perplexity on the same protocol: use it for the unpruned variant and say so."""
    known = next((i.dense_perplexity for i in infos if i.dense_perplexity is not None), None)
    filled = []
    for info in infos:
        if info.perplexity is None and info.method in (None, "none") and known is not None:
            info.perplexity = known
            filled.append(info.name)
    if not filled:
        return None
    return (
        f"perplexity of {', '.join(filled)} ({known:.4g}) is the dense perplexity recorded in the pruned "
        "variants' prune_report.json (same model, same protocol)"
    )


def busy_machine_note(before: tuple[float, ...], after: tuple[float, ...], mode: str) -> str | None:
    """Other work on the machine moves the figures; say so when the load average exceeded the cores."""
    cores = len(os.sched_getaffinity(0))
    worst = max(before[0], after[0])
    if worst <= cores:
        return None
    advice = (
        "variants measured one after another may have met different load: rerun with --mode interleaved"
        if mode == "sequential"
        else "all variants shared it alike (interleaved)"
    )
    return (
        f"the machine was busy: load average up to {worst:.1f} on {cores} cores during the run; other work "
        f"competed with the measurement, so absolute figures are low and {advice}"
    )


def output_shortfall(phases: list[PhaseResult], workload: list[RequestSpec]) -> list[str]:
    """Requests that stopped before max_tokens (EOS, where the server ignores `ignore_eos`) make variants do
    different amounts of work; per-token figures (TPOT, ITL) still compare, per-request ones less so."""
    wanted = {spec.index: spec.max_tokens for spec in workload}
    notes = []
    for phase in phases:
        done = [r for r in phase.requests if r.ok]
        short = [r for r in done if r.output_tokens < wanted.get(r.index, 0)]
        if short:
            notes.append(
                f"{phase.variant} at {phase.label}: {len(short)} of {len(done)} requests stopped before "
                f"max_tokens (mean {phase.client.mean_output_tokens:.1f} tokens); compare TPOT/ITL rather "
                "than per-request latency"
            )
    return notes


async def _drive_profile(runner: Runner, config: RunConfig, notes: list[str]) -> list[PhaseOutcome]:
    profile, bounds = config.profile, config.bounds
    if not isinstance(profile, SweepProfile):
        return await runner.run_step(
            fixed_step(profile, bounds.duration_s, bounds.max_requests), config.variants, config.mode
        )
    outcomes = await runner.run_step(probe_step(profile), config.variants, config.mode)
    top = max(sum(r.ok for r in o.records) / o.duration_s for o in outcomes)
    rates = sweep_rates(profile, top)
    if not rates:
        notes.append("the probe completed no request, so there was nothing to sweep")
    for step in sweep_steps(profile, rates, bounds.duration_s, bounds.max_requests):
        step_outcomes = await runner.run_step(step, config.variants, config.mode)
        outcomes.extend(step_outcomes)
        if config.slo and not any(check_slo(o.records, config.slo).meets for o in step_outcomes):
            notes.append(
                f"sweep stopped after {step.label}: no variant met the SLO there, higher rates won't"
            )
            break
    return outcomes


def _phase(outcome: PhaseOutcome, config: RunConfig) -> PhaseResult:
    step = outcome.step
    return PhaseResult(
        variant=outcome.variant,
        step=step.step,
        label=step.label,
        kind="concurrency" if step.concurrency is not None else "rate",
        concurrency=step.concurrency,
        offered_rate=step.rate,
        started_at=outcome.started_at,
        client=summarise(outcome.records, outcome.duration_s, config.slo),
        server=outcome.server,
        slo=check_slo(outcome.records, config.slo) if config.slo else None,
        requests=outcome.records,
    )


def _text(value: str | None) -> str | None:
    return None if value in (None, "", "null") else value


def _quantization(value: str | None) -> str | None:
    return None if value in (None, "", "null", "none", "None") else value


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return number if number is not None and number == number else None  # NaN = unknown


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("sparsefleet", "httpx"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "unknown"
    out["platform"] = sys.platform
    return out
