"""`prune-jobs sweep`: one method at several unstructured sparsities → perplexity curve, plot, and the
"essential sparsity" (Jaiswal et al., 2023): the largest sparsity up to which perplexity stays within
`tolerance` (relative) of the dense model's.

The model, its dense weights and the captured calibration inputs of block 0 are loaded once and reused for
every sparsity; only the block-by-block pruning and the evaluation run per point.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from pydantic import BaseModel

from prune_jobs.config import SweepConfig
from prune_jobs.masks import SparsityTarget
from prune_jobs.pipeline import PhaseTimer, PruneSession

log = logging.getLogger(__name__)
RESULT_FILE = "sweep.json"
PLOT_FILE = "sweep.png"


class SweepPoint(BaseModel):
    sparsity: float
    perplexity: float
    mean_relative_output_error: float | None
    max_relative_output_error: float | None
    prune_s: float


class SweepResult(BaseModel):
    model: str
    method: str
    calibration: str | None
    text: str
    seqlen: int
    windows: int
    dense_perplexity: float
    tolerance: float
    essential_sparsity: float  # 0.0 when even the lowest sparsity tried leaves the tolerance
    points: list[SweepPoint]
    command: str


def essential_sparsity(dense: float, points: list[SweepPoint], tolerance: float) -> float:
    """Largest sparsity s such that every point up to s keeps perplexity <= dense * (1 + tolerance)."""
    best = 0.0
    for point in sorted(points, key=lambda p: p.sparsity):
        if point.perplexity > dense * (1.0 + tolerance):
            break
        best = point.sparsity
    return best


def run_sweep(config: SweepConfig, *, command: str, progress: bool = True) -> SweepResult:
    timer = PhaseTimer()
    session = PruneSession(config.prune, timer, progress=progress, keep_dense=True)
    ev = config.evaluation
    dense = session.dense_perplexity(ev.text, ev.seqlen, ev.windows).perplexity
    log.info("dense perplexity %.4f", dense)
    points = []
    for sparsity in config.sparsities:
        session.restore_dense()
        before = timer.seconds["prune"]
        outcome = session.prune(SparsityTarget.of(None, sparsity))
        pruned = session.evaluate(ev.text, ev.seqlen, ev.windows).perplexity
        errors = [r.relative_output_error for r in outcome.layers if r.relative_output_error is not None]
        points.append(
            SweepPoint(
                sparsity=sparsity,
                perplexity=round(pruned, 4),
                mean_relative_output_error=round(sum(errors) / len(errors), 6) if errors else None,
                max_relative_output_error=round(max(errors), 6) if errors else None,
                prune_s=round(timer.seconds["prune"] - before, 2),
            )
        )
        log.info("sparsity %.2f: perplexity %.4f", sparsity, pruned)
    result = SweepResult(
        model=config.prune.model,
        method=config.prune.method,
        calibration=config.prune.calibration.source if config.prune.calibration else None,
        text=ev.text.name,
        seqlen=ev.seqlen,
        windows=ev.windows,
        dense_perplexity=round(dense, 4),
        tolerance=config.tolerance,
        essential_sparsity=essential_sparsity(dense, points, config.tolerance),
        points=points,
        command=command,
    )
    write_sweep(result, config.output, overwrite=config.overwrite)
    return result


def write_sweep(result: SweepResult, out_dir: Path, *, overwrite: bool) -> None:
    if out_dir.exists() and overwrite:
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RESULT_FILE).write_text(json.dumps(result.model_dump(), indent=2) + "\n")
    plot_sweep(result, out_dir / PLOT_FILE)


def plot_sweep(result: SweepResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    xs = [p.sparsity for p in result.points]
    ys = [p.perplexity for p in result.points]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    ax.plot([0.0, *xs], [result.dense_perplexity, *ys], marker="o", label=f"{result.method}")
    limit = result.dense_perplexity * (1 + result.tolerance)
    ax.axhline(result.dense_perplexity, color="grey", linewidth=0.8, label="dense")
    ax.axhspan(result.dense_perplexity, limit, color="green", alpha=0.15, label=f"+{result.tolerance:.0%}")
    if result.essential_sparsity > 0:
        ax.axvline(
            result.essential_sparsity,
            color="green",
            linestyle="--",
            label=f"essential sparsity {result.essential_sparsity:g}",
        )
    ax.set_yscale("log")
    ax.set_xlabel("sparsity (fraction of zeros in the pruned layers)")
    ax.set_ylabel(f"perplexity ({result.text}, {result.windows}×{result.seqlen})")
    ax.set_title(f"{result.model}: {result.method}, unstructured")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
