"""Quantization quality on the shared protocol (/work/shared/PROTOCOL.md), as a table.

Variants on SmolLM2-135M (all decoder linears; embeddings and the tied head stay float):

- `int8-rtn`, `w4a16-g64-rtn`: round-to-nearest, no calibration.
- `int8-gptq`, `w4a16-g64-gptq`: GPTQ without pruning: the pipeline's OBS pass with an all-keep mask and the
  scheme's ColumnQuantizer, on the protocol's calibration (128 × 512 windows of WikiText-2 valid).
- `sparsegpt-2:4`, `sparsegpt-2:4-int8`, `sparsegpt-2:4-w4a16`: `prune-jobs run` as a user runs it (fresh
  process, same calibration; w4a16 picks group size 64 by itself on SmolLM2).

Every variant is written to disk and evaluated *from the checkpoint* (40 × 1024 windows of WikiText-2 raw
test): transformers decompresses the weights; for int8 every quantized linear's input is also rounded per
token to int8 as vLLM's W8A8 kernel does (the tests check vLLM against exactly that arithmetic), so the
number is the served model's perplexity, not only the weights'. Checkpoint sizes are the safetensors bytes.

    python benchmarks/bench_quantization.py --out /tmp/bench-quant [--variants int8-rtn,int8-gptq]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from prune_jobs.config import CalibrationConfig, PruneConfig
from prune_jobs.evaluate import perplexity
from prune_jobs.masks import SparsityTarget
from prune_jobs.pipeline import PhaseTimer, PruneSession
from prune_jobs.quant.served import load_as_served
from prune_jobs.quant_api import QuantSpec
from prune_jobs.quantize import quantize_rtn, save_quantized_checkpoint

DATA = Path(os.environ.get("SPARSEFLEET_SHARED", "/work/shared")) / "data" / "wikitext-2"
CALIBRATION = ["--calibration", str(DATA / "wiki.valid.tokens.txt"),
               "--calibration-samples", "128", "--calibration-seqlen", "512"]
MODEL = "embedded:smollm2-135m"
SIDE_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")

IN_PROCESS = {  # variant → (scheme, group size, GPTQ?)
    "int8-rtn": ("int8", None, False),
    "int8-gptq": ("int8", None, True),
    "w4a16-g64-rtn": ("w4a16", 64, False),
    "w4a16-g64-gptq": ("w4a16", 64, True),
}
CLI = {  # variant → extra `prune-jobs run` arguments
    "sparsegpt-2:4": ["--method", "sparsegpt", "--pattern", "2:4"],
    "sparsegpt-2:4-int8": ["--method", "sparsegpt", "--pattern", "2:4", "--quant", "int8"],
    "sparsegpt-2:4-w4a16": ["--method", "sparsegpt", "--pattern", "2:4", "--quant", "w4a16"],
}


def dense_dir() -> Path:
    from prune_jobs.embedded import embedded_model_dir

    return embedded_model_dir(MODEL, quiet=True)


def quantize_in_process(name: str, out: Path) -> tuple[float, list[str]]:
    """RTN or GPTQ (no pruning) of every decoder linear, saved to `out`; returns (seconds, command)."""
    scheme, group, gptq = IN_PROCESS[name]
    spec = QuantSpec(scheme, group)
    start = time.perf_counter()
    calibration = CalibrationConfig.model_validate(
        {"source": str(DATA / "wiki.valid.tokens.txt"), "samples": 128, "seqlen": 512}
    ) if gptq else None
    config = PruneConfig(model=MODEL, method="magnitude", quant=scheme if gptq else None,
                         quant_group_size=group if gptq else None, calibration=calibration)
    session = PruneSession(config, PhaseTimer(), progress=False)
    if gptq:
        # An all-keep mask: the OBS pass then only rounds, spreading each column's error (GPTQ).
        outcome = session.prune(SparsityTarget(pattern=None, sparsity=0.0))
        params = outcome.quant_params
    else:
        params = {}
        for block in session.linears:
            for module_name, linear in block.items():
                with torch.no_grad():
                    linear.weight.data, params[module_name] = quantize_rtn(linear.weight.data, spec)
    save_quantized_checkpoint(session.model, params, spec, out, sparsity_structure=None)
    for side in SIDE_FILES:
        if (session.source.path / side).is_file():
            shutil.copy(session.source.path / side, out / side)
    return time.perf_counter() - start, [f"in-process {name} (see {Path(__file__).name})"]


def run_cli(name: str, out: Path) -> tuple[float, list[str]]:
    cmd = [sys.executable, "-m", "prune_jobs", "run", "--model", MODEL, *CLI[name], *CALIBRATION,
           "--output", str(out), "--overwrite"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start, ["prune-jobs", *cmd[3:]]


def evaluate(checkpoint: Path, scheme: str | None) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if scheme is None:
        model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    else:
        model = load_as_served(checkpoint)  # W8A8: activations rounded per token as vLLM does
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    return perplexity(model, tokenizer, DATA / "wiki.test.raw.txt", seqlen=1024, windows=40,
                      progress=False).perplexity


def scheme_of(name: str) -> str | None:
    return "int8" if "int8" in name else "w4a16" if "w4a16" in name else None


def size_mb(checkpoint: Path) -> float:
    return sum(f.stat().st_size for f in checkpoint.glob("*.safetensors")) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", default=",".join(["dense", *IN_PROCESS, *CLI]))
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    for name in args.variants.split(","):
        target = args.out / name.replace(":", "")
        load_start = os.getloadavg()
        if name == "dense":
            seconds, command, target = 0.0, ["prune-jobs fetch-model " + MODEL], dense_dir()
        elif name in IN_PROCESS:
            seconds, command = quantize_in_process(name, target)
        else:
            seconds, command = run_cli(name, target)
        eval_start = time.perf_counter()
        ppl = evaluate(target, scheme_of(name))
        row = {"variant": name, "perplexity": round(ppl, 3), "quantize_s": round(seconds, 1),
               "eval_s": round(time.perf_counter() - eval_start, 1), "size_mb": round(size_mb(target), 1),
               "loadavg": [round(load_start[0], 1), round(os.getloadavg()[0], 1)],
               "command": " ".join(command)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print("| variant | perplexity (40×1024) | checkpoint MB | job s | eval s | load avg start→end |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['perplexity']:.2f} | {r['size_mb']:.0f} | {r['quantize_s']:.0f} | "
              f"{r['eval_s']:.0f} | {r['loadavg'][0]}→{r['loadavg'][1]} |")


if __name__ == "__main__":
    main()
