"""Pruning quality and speed on the shared protocol (/work/shared/PROTOCOL.md), as a table.

Runs `prune-jobs run` (a fresh process per variant, as a user would) for each variant on SmolLM2-135M with
the protocol's calibration (128 × 512 windows of WikiText-2 valid at seeded offsets) and evaluation
(WikiText-2 raw test, 40 × 1024), reads each prune_report.json and prints perplexity against the reference
(llm-compressor 0.14) table, wall time per phase and the load average around each run. One checkpoint is
cross-checked with the independent /work/shared/tools/ppl_check.py (perplexity, N:M validity, embeddings
and head untouched).

    python benchmarks/bench_pruning.py --out /tmp/bench-pruning [--variants sparsegpt-2:4,wanda-2:4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(os.environ.get("SPARSEFLEET_SHARED", "/work/shared")) / "data" / "wikitext-2"
PPL_CHECK = Path(os.environ.get("SPARSEFLEET_SHARED", "/work/shared")) / "tools" / "ppl_check.py"
# variant → (method, pattern, llm-compressor perplexity to meet, its prune wall time in s)
VARIANTS = {
    "magnitude-2:4": ("magnitude", "2:4", 1695.0, 1.0),
    "wanda-2:4": ("wanda", "2:4", 159.6, 309.0),
    "sparsegpt-2:4": ("sparsegpt", "2:4", 67.36, 429.0),
    "wanda-50%": ("wanda", "unstructured", 51.10, 374.0),
    "sparsegpt-50%": ("sparsegpt", "unstructured", 41.78, 573.0),
}
TIME_TARGET = ("sparsegpt-2:4", 214.0)  # half of llm-compressor's 429 s: calibrate + prune phases


def run_variant(name: str, out: Path, within_layer: str) -> dict[str, object]:
    method, pattern, _, _ = VARIANTS[name]
    target = out / name.replace(":", "").replace("%", "pct")
    cmd = [
        sys.executable,
        "-m",
        "prune_jobs",
        "run",
        "--model",
        "embedded:smollm2-135m",
        "--method",
        method,
        "--pattern",
        pattern,
        "--calibration",
        str(DATA / "wiki.valid.tokens.txt"),
        "--calibration-samples",
        "128",
        "--calibration-seqlen",
        "512",
        "--eval-text",
        str(DATA / "wiki.test.raw.txt"),
        "--eval-windows",
        "40",
        "--eval-seqlen",
        "1024",
        "--within-layer",
        within_layer,
        "--output",
        str(target),
        "--overwrite",
    ]
    if pattern == "unstructured":
        cmd += ["--sparsity", "0.5"]
    load_start = os.getloadavg()
    start = time.perf_counter()
    log_path = out / f"{target.name}.log"
    with open(log_path, "w") as log:  # progress of the job, one line per block
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - start
    load_end = os.getloadavg()
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed, see {log_path}:\n{log_path.read_text()[-3000:]}")
    report = json.loads((target / "prune_report.json").read_text())
    return {
        "name": name,
        "dir": target,
        "report": report,
        "wall": wall,
        "load": (load_start, load_end),
        "cmd": cmd,
    }


def cross_check(result: dict[str, object], dense_dir: Path) -> dict[str, object]:
    pattern = VARIANTS[str(result["name"])][1]
    cmd = [
        sys.executable,
        str(PPL_CHECK),
        str(result["dir"]),
        str(DATA / "wiki.test.raw.txt"),
        "--dense",
        str(dense_dir),
    ] + (["--nm", pattern] if ":" in pattern else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fetch_dense_dir() -> Path:
    cmd = [sys.executable, "-m", "prune_jobs", "fetch-model", "embedded:smollm2-135m"]
    return Path(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip())


def print_table(results: list[dict[str, object]]) -> None:
    header = (
        "variant",
        "schedule",
        "ppl",
        "target",
        "ok",
        "dense",
        "load s",
        "calib s",
        "prune s",
        "calib+prune",
        "eval s",
        "save s",
        "job wall s",
        "loadavg start→end",
    )
    rows = []
    for r in results:
        rep = r["report"]
        t = rep["timings_s"]
        _, _, target_ppl, _ = VARIANTS[str(r["name"])]
        ppl = rep["perplexity"]["pruned"]
        rows.append(
            (
                r["name"],
                rep.get("within_layer") or "-",
                f"{ppl:.2f}",
                f"{target_ppl:g}",
                "yes" if ppl <= target_ppl else "NO",
                f"{rep['perplexity']['dense']:.2f}",
                f"{t['load']:.0f}",
                f"{t['calibrate']:.0f}",
                f"{t['prune']:.0f}",
                f"{t['calibrate'] + t['prune']:.0f}",
                f"{t['eval']:.0f}",
                f"{t['save']:.0f}",
                f"{r['wall']:.0f}",
                f"{r['load'][0][0]:.2f}→{r['load'][1][0]:.2f}",
            )
        )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    for line in (header, tuple("-" * w for w in widths), *rows):
        print("| " + " | ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="directory for the checkpoints")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated subset of: " + ", ".join(VARIANTS).replace("%", "%%"),
    )
    parser.add_argument("--within-layer", default="auto", choices=("auto", "sequential", "parallel"))
    parser.add_argument("--check", default="sparsegpt-2:4", help="variant to cross-check with ppl_check.py")
    args = parser.parse_args()
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    print(
        f"# cpu count {os.cpu_count()}, loadavg at start {os.getloadavg()}, within-layer {args.within_layer}"
    )
    results = []
    for name in names:
        print(f"# running {name} ...", file=sys.stderr, flush=True)
        results.append(run_variant(name, args.out, args.within_layer))
    print_table(results)
    if TIME_TARGET[0] in names:
        rep = next(r["report"] for r in results if r["name"] == TIME_TARGET[0])
        spent = rep["timings_s"]["calibrate"] + rep["timings_s"]["prune"]
        print(f"\n{TIME_TARGET[0]} calibrate+prune {spent:.0f} s vs target <= {TIME_TARGET[1]:.0f} s")
    checked = next((r for r in results if r["name"] == args.check), None)
    if checked is not None:
        print(f"\nppl_check.py on {args.check}: {json.dumps(cross_check(checked, fetch_dense_dir()))}")
    print(f"\n# loadavg at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
