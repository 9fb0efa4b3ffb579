"""Time SparseGPT's per-matrix OBS pass on SmolLM2-135M's linear shapes, as a table.

One decoder block of SmolLM2 prunes q/k/v (576 inputs, 576/192/192 outputs), o (576 → 576), gate/up
(576 → 1536) and down (1536 → 576). For each shape: the whole `obs_prune` call (2:4, block 128), and the
parts of it spent in the inverse Hessian factor and in the compiled block sweep; the last row adds them up
per decoder block (x30 for the whole model). The Hessians come from random correlated inputs; the timing
does not depend on their values.

    python benchmarks/bench_obs.py [--threads 2] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable

import torch

import prune_jobs.methods.sparsegpt as sparsegpt
from prune_jobs.masks import NMPattern, SparsityTarget
from prune_jobs.methods import obs_sweep

# name → (out_features, in_features)
SHAPES = {
    "q_proj": (576, 576),
    "k_proj": (192, 576),
    "v_proj": (192, 576),
    "o_proj": (576, 576),
    "gate_proj": (1536, 576),
    "up_proj": (1536, 576),
    "down_proj": (576, 1536),
}


def timed(spent: dict[str, float], key: str, fn: Callable) -> Callable:
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - start

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spent: dict[str, float] = defaultdict(float)
    # measure the parts through the module attributes obs_prune calls them by
    sparsegpt.inverse_hessian_factor = timed(spent, "inverse", sparsegpt.inverse_hessian_factor)
    obs_sweep.prune_block = timed(spent, "sweep", obs_sweep.prune_block)
    target = SparsityTarget(NMPattern(2, 4), 0.5)

    print(f"threads {args.threads}, median of {args.repeats}, torch {torch.__version__}")
    print("| linear | shape | obs_prune (ms) | inverse factor (ms) | block sweep (ms) |")
    print("|---|---|---|---|---|")
    totals = defaultdict(float)
    for name, (rows, cols) in SHAPES.items():
        x = torch.randn(8192, cols) @ torch.randn(cols, cols) / cols**0.5
        hessian = x.T @ x / x.shape[0]
        weight = torch.randn(rows, cols)
        sparsegpt.obs_prune(weight, hessian, target=target)  # warm-up (and the kernel's compilation)
        runs = []
        for _ in range(args.repeats):
            spent.clear()
            start = time.perf_counter()
            sparsegpt.obs_prune(weight, hessian, target=target)
            runs.append((time.perf_counter() - start, spent["inverse"], spent["sweep"]))
        total, inverse, sweep = (statistics.median(part) * 1e3 for part in zip(*runs, strict=True))
        for key, value in (("total", total), ("inverse", inverse), ("sweep", sweep)):
            totals[key] += value
        print(f"| {name} | {rows}x{cols} | {total:.1f} | {inverse:.1f} | {sweep:.1f} |")
    block = f"| **decoder block** | | **{totals['total']:.0f}** | {totals['inverse']:.0f} |"
    print(f"{block} {totals['sweep']:.0f} |")


if __name__ == "__main__":
    main()
