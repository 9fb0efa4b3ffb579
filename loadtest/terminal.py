"""The terminal summary: the few tables that fit a terminal (summary.md holds the full ones)."""

from __future__ import annotations

from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from loadtest.analysis import figures
from loadtest.fleet import FleetReport
from loadtest.report import verdict
from loadtest.result import RunResult

# (label, client figure, server figure)
_ROWS = (
    ("request throughput (req/s)", "request_throughput", None),
    ("output throughput (tok/s)", "output_throughput", None),
    ("goodput (req/s)", "request_goodput", None),
    ("TTFT P50 / P90 (ms)", "ttft_ms.p50", "ttft_ms.p90"),
    ("TPOT P50 / P90 (ms)", "tpot_ms.p50", "tpot_ms.p90"),
    ("ITL P50 / P90 (ms)", "itl_ms.p50", "itl_ms.p90"),
    ("E2E P50 / P90 (ms)", "e2el_ms.p50", "e2el_ms.p90"),
    ("server TPOT mean (ms)", "server.tpot.mean_ms", None),
    ("server E2E mean (ms)", "server.e2el.mean_ms", None),
)


def print_summary(result: RunResult, console: Console) -> None:
    console.print(comparison(result))
    if result.fleet is not None:
        console.print(fleet_table(result.fleet))
    console.print(Markdown("\n".join(f"- {line}" for line in verdict(result))))
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)


def comparison(result: RunResult) -> Table:
    head = result.headline_step()
    phases = {p.variant: p for p in result.phases if p.step == head}
    order = [v.name for v in result.variants if v.name in phases]
    flat = {v: figures(phases[v]) for v in order}
    label = phases[order[0]].label if order else ""
    table = Table(title=f"{' vs '.join(order)} at {label} (client side unless marked)", title_justify="left")
    table.add_column("figure", no_wrap=True)
    for v in order:
        table.add_column(v, justify="right")
    others = [v for v in order if v != result.baseline]
    for v in others:
        table.add_column(f"{v} ÷ {result.baseline}", justify="right")
    for text, first, second in _ROWS:
        cells = [_pair(flat[v], first, second) for v in order]
        if all(c == "–" for c in cells):
            continue
        ratios = [_pair_ratio(flat[v], flat[result.baseline], first, second) for v in others]
        table.add_row(text, *cells, *ratios)
    failed = [f"{v}: {phases[v].client.failed}" for v in order if phases[v].client.failed]
    if failed:
        table.add_row(
            "failed requests", *[str(phases[v].client.failed) for v in order], *["" for _ in others]
        )
    return table


def fleet_table(fleet: FleetReport) -> Table:
    plan = fleet.plan
    table = Table(
        title=f"Fleet for {fleet.mean_rps * 86_400:,.0f} requests/day, peak {fleet.peak_rps:.1f} req/s, "
        f"${plan.gpu_price_per_hour:.2f}/GPU-hour, {plan.gpus_per_replica} GPU/replica",
        title_justify="left",
    )
    for name in ("variant", "req/s/replica", "GPUs", "cost/month", "$/M out tok", "saving", "perplexity (Δ)"):
        table.add_column(name, justify="left" if name == "variant" else "right", no_wrap=name == "variant")
    for line in fleet.lines:
        if line.replicas is None:
            table.add_row(
                line.variant, f"{line.rps_per_replica:.3f}", "misses SLO", "–", "–", "–", _ppl(line)
            )
            continue
        saving = (
            "baseline"
            if line.variant == fleet.baseline
            else f"{line.saving_fraction:+.0%}"
            if line.saving_fraction is not None
            else "–"
        )
        per_million = line.cost_per_million_output_tokens
        table.add_row(
            line.variant,
            f"{line.rps_per_replica:.3f}",
            str(line.gpus),
            f"${line.cost_per_month:,.0f}",
            f"${per_million:,.2f}" if per_million is not None else "–",
            saving,
            _ppl(line),
        )
    return table


def _ppl(line: object) -> str:
    ppl, delta = getattr(line, "perplexity", None), getattr(line, "perplexity_delta", None)
    if ppl is None:
        return "?"
    return f"{ppl:.2f}" + (f" ({delta:+.2f})" if delta is not None else "")


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:,.1f}"


def _pair(values: dict[str, float | None], first: str, second: str | None) -> str:
    if second is None:
        return _fmt(values.get(first))
    a, b = values.get(first), values.get(second)
    return "–" if a is None and b is None else f"{_fmt(a)} / {_fmt(b)}"


def _pair_ratio(mine: dict, base: dict, first: str, second: str | None) -> str:
    def one(key: str) -> str:
        return f"{mine[key] / base[key]:.2f}×" if mine.get(key) is not None and base.get(key) else "–"

    return one(first) if second is None else f"{one(first)} / {one(second)}"
