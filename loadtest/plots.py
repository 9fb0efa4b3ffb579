"""PNG plots of a result: latency percentiles vs request rate, tokens/s per variant, GPUs needed vs traffic.

Uses matplotlib's object API (`Figure`, Agg canvas) so no global pyplot state or GUI backend is involved.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from loadtest.fleet import FleetReport, gpus_curve
from loadtest.result import RunResult

_STYLES = {"p50": ("-", "o"), "p90": ("--", "s"), "p99": (":", "^")}


def write_plots(result: RunResult, out_dir: Path) -> list[Path]:
    paths = [
        latency_vs_rate(result, out_dir / "latency_vs_rate.png"),
        throughput(result, out_dir / "throughput.png"),
    ]
    if result.fleet is not None:
        paths.append(gpus_vs_traffic(result.fleet, out_dir / "gpus_vs_traffic.png"))
    return paths


def latency_vs_rate(result: RunResult, path: Path) -> Path:
    """TTFT, TPOT and E2E latency percentiles against the achieved request rate, one colour per variant."""
    fig = Figure(figsize=(13, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    slo = result.slo or {}
    for ax, (field, title, slo_key) in zip(
        axes,
        (
            ("ttft_ms", "time to first token", "ttft"),
            ("tpot_ms", "time per output token", "tpot"),
            ("e2el_ms", "end-to-end latency", "e2el"),
        ),
        strict=True,
    ):
        top = 0.0
        for i, variant in enumerate(v.name for v in result.variants):
            phases = sorted(
                (p for p in result.phases if p.variant == variant and getattr(p.client, field)),
                key=lambda p: p.client.request_throughput,
            )
            if not phases:
                continue
            x = [p.client.request_throughput for p in phases]
            for stat, (style, marker) in _STYLES.items():
                y = [getattr(getattr(p.client, field), stat) for p in phases]
                ax.plot(x, y, style, marker=marker, color=f"C{i}", label=f"{variant} {stat.upper()}")
                top = max(top, *y)
        _slo_line(ax, slo.get(slo_key), top)
        ax.set_title(title)
        ax.set_xlabel("achieved requests/s")
        ax.set_ylabel("ms")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle("Latency percentiles vs request rate (client side)")
    fig.savefig(path, dpi=110)
    return path


def _slo_line(ax: object, objective_s: float | None, top_ms: float) -> None:
    """Draw the objective, unless it is so far above the data that it would flatten them: then say so."""
    if not objective_s:
        return
    ms = objective_s * 1000
    if top_ms and ms > 3 * top_ms:
        ax.text(
            0.98,
            0.97,
            f"SLO {ms:g} ms (off scale)",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize="small",
            color="grey",
        )
    else:
        ax.axhline(ms, color="grey", linewidth=1, label="SLO")


def throughput(result: RunResult, path: Path) -> Path:
    """Output tokens/s and requests/s per variant at the headline step (the same load for each)."""
    head = result.headline_step()
    phases = {p.variant: p for p in result.phases if p.step == head}
    names = [v.name for v in result.variants if v.name in phases]
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax_tok, ax_req = fig.subplots(1, 2)
    for ax, attr, unit in (
        (ax_tok, "output_throughput", "output tokens/s"),
        (ax_req, "request_throughput", "requests/s"),
    ):
        values = [getattr(phases[n].client, attr) for n in names]
        bars = ax.bar(names, values, color=[f"C{i}" for i in range(len(names))])
        ax.bar_label(bars, fmt="%.2f")
        ax.set_ylabel(unit)
        ax.set_title(unit)
        ax.grid(axis="y", alpha=0.3)
    label = next(iter(phases.values())).label if phases else ""
    fig.suptitle(f"Throughput per variant at {label}")
    fig.savefig(path, dpi=110)
    return path


def gpus_vs_traffic(fleet: FleetReport, path: Path) -> Path:
    """GPUs each variant needs as the daily traffic grows, with the planned traffic marked."""
    plan = fleet.plan
    planned_per_day = fleet.mean_rps * 86_400
    per_day = [planned_per_day * 3 * i / 200 for i in range(1, 201)]
    peaks = [d / 86_400 * plan.peak_to_mean for d in per_day]
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    for i, line in enumerate(fleet.lines):
        if line.rps_per_replica <= 0:
            ax.plot([], [], color=f"C{i}", label=f"{line.variant} (cannot meet the SLO)")
            continue
        gpus = gpus_curve(line.rps_per_replica, plan.gpus_per_replica, peaks)
        ax.step(
            per_day,
            gpus,
            where="post",
            color=f"C{i}",
            label=f"{line.variant} ({line.rps_per_replica:.3g} req/s per replica)",
        )
    ax.axvline(planned_per_day, color="grey", linestyle="--", linewidth=1, label="planned traffic")
    ax.set_xlabel("requests per day (mean)")
    ax.set_ylabel("GPUs")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.suptitle(
        f"GPUs needed vs traffic (peak-to-mean {plan.peak_to_mean:g}, {plan.gpus_per_replica} GPU(s)/replica)"
    )
    fig.savefig(path, dpi=110)
    return path
