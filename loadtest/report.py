"""Report writers: `result.json` (the versioned schema), `summary.md` (tables for people) and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

from loadtest.analysis import figures
from loadtest.fleet import FleetLine, FleetReport
from loadtest.result import RunResult

# (label, client figure, server figure) rows of the comparison table.
_ROWS: list[tuple[str, str | None, str | None]] = [
    ("requests ok", "completed", "server.requests_success"),
    ("request throughput (req/s)", "request_throughput", None),
    ("output throughput (tok/s)", "output_throughput", None),
    ("goodput (req/s)", "request_goodput", None),
    *[
        (f"{label} {stat} (ms)", f"{name}_ms.{stat}", f"server.{name}.{stat}_ms")
        for name, label in (("ttft", "TTFT"), ("tpot", "TPOT"), ("itl", "ITL"), ("e2el", "E2E latency"))
        for stat in ("mean", "p50", "p90", "p99")
    ],
]
# Ratios within ±10% are reported as "not faster": the same model served under two names and measured one
# after the other on this shared 2-core machine came out 7% apart (docs/loadtest.md).
SAME_SPEED = 0.10


def write_reports(result: RunResult, out_dir: Path) -> list[Path]:
    """Write result.json, summary.md and the plots; return the paths written."""
    from loadtest.plots import write_plots  # matplotlib is slow to import; only writers need it

    out_dir.mkdir(parents=True, exist_ok=True)
    result_path = out_dir / "result.json"
    result_path.write_text(json.dumps(result.model_dump(mode="json"), indent=2) + "\n")
    summary_path = out_dir / "summary.md"
    summary_path.write_text(summary_markdown(result))
    return [result_path, summary_path, *write_plots(result, out_dir)]


def load_result(path: Path) -> RunResult:
    from loadtest.errors import LoadTestError
    from loadtest.result import RESULT_KIND, SCHEMA_VERSION

    if not path.is_file():
        raise LoadTestError(f"result file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise LoadTestError(f"{path} is not JSON ({exc.msg})") from None
    if not isinstance(data, dict) or data.get("kind") != RESULT_KIND:
        raise LoadTestError(f"{path} is not a loadtest result.json")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise LoadTestError(
            f"{path} has schema_version {data.get('schema_version')}; this loadtest reads {SCHEMA_VERSION}"
        )
    return RunResult.model_validate(data)


def summary_markdown(result: RunResult) -> str:
    lines = [f"# Load test: {' vs '.join(v.name for v in result.variants)}", ""]
    lines += _run_facts(result)
    lines += [
        "",
        "## Variants",
        "",
        "| variant | replicas | method | pattern | sparsity | quantization | perplexity |",
        "|---|---:|---|---|---:|---|---:|",
    ]
    for v in result.variants:
        lines.append(
            f"| {v.name} | {v.replicas} | {v.method or '?'} | {v.pattern or '?'} | {_num(v.sparsity, 2)} | "
            f"{v.quantization or '–'} | {_num(v.perplexity, 2)} |"
        )
    head = result.headline_step()
    lines += ["", *comparison_table(result, head)]
    lines += _steps_table(result)
    lines += _capacity_table(result)
    if result.fleet is not None:
        lines += ["", *fleet_markdown(result.fleet)]
    lines += ["", "## Verdict", "", *[f"- {s}" for s in verdict(result)]]
    if result.notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in result.notes]]
    return "\n".join(lines) + "\n"


def _run_facts(result: RunResult) -> list[str]:
    w = result.workload
    if w.get("kind") == "synthetic":
        workload = (
            f"synthetic, {w['input_tokens']} input → {w['output_tokens']} output tokens "
            f"(±{w['spread']:.0%}), {w['count']} prompts, seed {w['seed']}"
        )
    else:
        workload = f"prompts from {w.get('path')}"
    slo = result.slo
    slo_text = "none"
    if slo:
        parts = [f"{k} ≤ {v * 1000:g} ms" for k, v in slo.items() if k != "pct" and v is not None]
        slo_text = ", ".join(parts) + f" at P{slo['pct']:g}"
    b = result.bounds
    bounds = (
        f"{b['duration_s']:g} s per phase"
        + (f", ≤ {b['max_requests']} requests" if b.get("max_requests") else "")
        + f", {b['warmup_requests']} warm-up requests"
    )
    la, lb = result.loadavg_before, result.loadavg_after
    return [
        f"- target: `{result.url}` ({result.endpoint}), {result.mode}, baseline **{result.baseline}**",
        f"- profile: {result.profile.get('kind')} — {_profile_text(result.profile)}; {bounds}",
        f"- workload: {workload}",
        f"- SLO: {slo_text}",
        f"- load average (1/5/15 min) before {la[0]:.2f}/{la[1]:.2f}/{la[2]:.2f}, "
        f"after {lb[0]:.2f}/{lb[1]:.2f}/{lb[2]:.2f}",
        f"- {result.created_at}: `{result.command}`" if result.command else f"- {result.created_at}",
    ]


def _profile_text(profile: dict) -> str:
    kind = profile.get("kind")
    if kind == "concurrency":
        return f"{profile['concurrency']} in flight"
    if kind in ("constant", "poisson"):
        return f"{profile['rate']:g} req/s"
    rates = profile.get("rates")
    return (
        f"rates {', '.join(f'{r:g}' for r in rates)} req/s"
        if rates
        else f"{profile['steps']} {profile['arrivals']} steps after a probe at "
        f"concurrency {profile['probe_concurrency']}"
    )


def comparison_table(result: RunResult, step: int) -> list[str]:
    """Client and server figures side by side per variant, then variant ÷ baseline for each."""
    phases = {p.variant: p for p in result.phases if p.step == step}
    order = [v.name for v in result.variants if v.name in phases]
    others = [v for v in order if v != result.baseline]
    label = next(iter(phases.values())).label
    header = ["figure"]
    for v in order:
        header += [f"{v} client", f"{v} server"]
    for v in others:
        header += [f"{v} ÷ {result.baseline} client", "÷ server"]
    lines = [
        f"## Comparison at {label}",
        "",
        "Client = measured by this load generator; server = the gateway's `/metrics` deltas over the same "
        "phase (bucket-interpolated quantiles). Ratios are variant ÷ baseline in this run.",
        "",
        "| " + " | ".join(header) + " |",
        "|---" + "|---:" * (len(header) - 1) + "|",
    ]
    flat = {v: figures(phases[v]) for v in order}
    for text, client_key, server_key in _ROWS:
        row = [text]
        for v in order:
            row += [_cell(flat[v], client_key, text), _cell(flat[v], server_key, text)]
        for v in others:
            row += [
                _ratio_cell(flat[v], flat[result.baseline], client_key),
                _ratio_cell(flat[v], flat[result.baseline], server_key),
            ]
        if any(c != "–" for c in row[1:]):
            lines.append("| " + " | ".join(row) + " |")
    failed = {v: phases[v].client.failed for v in order}
    if any(failed.values()):
        lines += [
            "",
            "Failed requests: "
            + "; ".join(
                f"{v}: {n} ({', '.join(f'{c} {k}' for k, c in phases[v].client.errors.items())})"
                for v, n in failed.items()
                if n
            ),
        ]
    return lines


def _cell(values: dict[str, float | None], key: str | None, label: str) -> str:
    if key is None:
        return "–"
    value = values.get(key)
    if value is None:
        return "–"
    return f"{value:.0f}" if label == "requests ok" else _num(value, 3 if "req/s" in label else 1)


def _ratio_cell(mine: dict[str, float | None], base: dict[str, float | None], key: str | None) -> str:
    if key is None or mine.get(key) is None or not base.get(key):
        return "–"
    return f"{mine[key] / base[key]:.2f}×"  # type: ignore[operator]


def _steps_table(result: RunResult) -> list[str]:
    if len({p.step for p in result.phases}) < 2:
        return []
    lines = [
        "",
        "## Load steps",
        "",
        "| step | variant | offered | achieved req/s | output tok/s | TTFT P90 (ms) | "
        "TPOT P90 (ms) | E2E P90 (ms) | failed | meets SLO |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in sorted(result.phases, key=lambda p: (p.step, p.variant)):
        c = p.client
        offered = (
            f"{p.offered_rate:.3g} req/s" if p.offered_rate is not None else f"concurrency {p.concurrency}"
        )
        meets = "–" if p.slo is None else ("yes" if p.slo.meets else "no")
        lines.append(
            f"| {p.step} | {p.variant} | {offered} | {c.request_throughput:.3f} | "
            f"{c.output_throughput:.1f} | {_p90(c.ttft_ms)} | {_p90(c.tpot_ms)} | {_p90(c.e2el_ms)} | "
            f"{c.failed} | {meets} |"
        )
    return lines


def _p90(dist: object) -> str:
    return _num(getattr(dist, "p90", None), 1)


def _capacity_table(result: RunResult) -> list[str]:
    lines = ["", "## Capacity", "", "| variant | req/s | req/s per replica | how |", "|---|---:|---:|---|"]
    for c in result.capacities:
        lines.append(f"| {c.variant} | {c.rps:.3f} | {c.rps_per_replica:.3f} | {c.note} |")
    return lines


def fleet_markdown(fleet: FleetReport) -> list[str]:
    plan = fleet.plan
    traffic = (
        f"{plan.requests_per_day:,.0f} requests/day"
        if plan.requests_per_day is not None
        else f"{plan.requests_per_second:g} requests/s"
    )
    tokens = f"{fleet.output_tokens_per_request:.0f}" if fleet.output_tokens_per_request else "?"
    lines = [
        "## Fleet sizing",
        "",
        f"{traffic} (mean {fleet.mean_rps:.2f} req/s) × peak-to-mean {plan.peak_to_mean:g} = "
        f"**{fleet.peak_rps:.2f} req/s at peak**; {tokens} output tokens/request; "
        f"${plan.gpu_price_per_hour:.2f} per GPU-hour, {plan.gpus_per_replica} GPU(s) per replica, "
        f"{plan.hours_per_month:g} h/month. Sized for the peak, running around the clock.",
        "",
        f"| variant | req/s per replica | replicas | GPUs | GPU-h/month | cost/month | cost/year | "
        f"$/M output tokens | saving vs {fleet.baseline} | perplexity (Δ) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for line in fleet.lines:
        if line.replicas is None:
            lines.append(
                f"| {line.variant} | {line.rps_per_replica:.3f} | cannot meet the SLO | – | – | – | – | – "
                f"| – | {_ppl(line.perplexity, line.perplexity_delta)} |"
            )
            continue
        saving = _saving(line, fleet.baseline)
        lines.append(
            f"| {line.variant} | {line.rps_per_replica:.3f} | {line.replicas} | {line.gpus} | "
            f"{line.gpu_hours_per_month:,.0f} | ${line.cost_per_month:,.0f} | ${line.cost_per_year:,.0f} | "
            f"{_money(line.cost_per_million_output_tokens)} | {saving} | "
            f"{_ppl(line.perplexity, line.perplexity_delta)} |"
        )
    return lines


def verdict(result: RunResult) -> list[str]:
    """Plain sentences: is each variant faster, does it save hardware, and what does it cost in quality."""
    head = result.headline_step()
    ratios = {r.variant: r for r in result.ratios if r.step == head}
    fleet_lines = {line.variant: line for line in (result.fleet.lines if result.fleet else [])}
    out = []
    for v in result.variants:
        if v.name == result.baseline or v.name not in ratios:
            continue
        r = ratios[v.name].figures
        speed = r.get("output_throughput")
        tpot = r.get("tpot_ms.p50")
        if speed is None:
            out.append(f"**{v.name}**: no successful requests to compare.")
            continue
        if speed > 1 + SAME_SPEED:
            how = "**faster**"
        elif speed < 1 - SAME_SPEED:
            how = "**slower**"
        else:
            how = f"**not faster** (within ±{SAME_SPEED:.0%}, the noise of one run here)"
        text = (
            f"**{v.name}** vs {result.baseline}: output throughput ×{speed:.2f}"
            + (f", median TPOT ×{tpot:.2f}" if tpot is not None else "")
            + f" → {how} on this machine."
        )
        line = fleet_lines.get(v.name)
        if line is not None and line.saving_fraction is not None:
            base = fleet_lines[result.baseline]
            text += f" Fleet: {line.gpus} vs {base.gpus} GPUs, {_saving_words(line)}."
        elif line is not None and line.replicas is None:
            text += " Fleet: it cannot meet the SLO at the measured load."
        base_info = result.variant(result.baseline)
        if v.perplexity is not None and base_info.perplexity is not None:
            text += (
                f" Quality: perplexity {v.perplexity:.2f} vs {base_info.perplexity:.2f} "
                f"({v.perplexity - base_info.perplexity:+.2f}, ×{v.perplexity / base_info.perplexity:.2f})."
            )
        else:
            text += " Quality: perplexity unknown (no prune_report.json perplexity for one of them)."
        out.append(text)
    return out or ["only one variant measured: nothing to compare"]


def _saving_words(line: FleetLine) -> str:
    saving, fraction = line.saving_per_month or 0.0, line.saving_fraction or 0.0
    if saving == 0:
        return "the same cost"
    if saving > 0:
        return f"saving {_money(saving)}/month ({fraction:.0%})"
    return f"costing {_money(-saving)}/month more ({-fraction:.0%})"


def _saving(line: FleetLine, baseline: str) -> str:
    if line.variant == baseline:
        return "baseline"
    if line.saving_per_month is None:
        return "–"
    return f"${line.saving_per_month:,.0f}/mo ({_pct(line.saving_fraction)})"


def _num(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _money(value: float | None) -> str:
    return "–" if value is None else f"${value:,.2f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:+.0%}"


def _ppl(ppl: float | None, delta: float | None) -> str:
    if ppl is None:
        return "?"
    return f"{ppl:.2f}" + (f" ({delta:+.2f})" if delta is not None else "")
