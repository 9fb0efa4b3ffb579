"""Shared bits of the GPU benchmark scripts: import path, the no-GPU exit, tables, the results file.

The scripts need only torch (and this repository on disk): they run on bare GPU images without the
project installed, with `python3 benchmarks/gpu/<script>.py` from the repository root.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

EXIT_NO_GPU = 3

# Llama-3 linear shapes as vLLM serves them (q/k/v and gate/up fused): name -> (N out, K in).
LLAMA3_SHAPES = {
    "8B": {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336)},
    "70B": {"qkv": (10240, 8192), "o": (8192, 8192), "gate_up": (57344, 8192), "down": (8192, 28672)},
}


def require_gpu(script: str) -> None:
    """Exit with one line (code 3) unless a CUDA GPU with sparse tensor cores (sm80+) is visible."""
    import torch

    if not torch.cuda.is_available():
        print(
            f"error: {script} needs an NVIDIA GPU (sm80+); torch {torch.__version__} sees none",
            file=sys.stderr,
        )
        sys.exit(EXIT_NO_GPU)
    major, minor = torch.cuda.get_device_capability()
    if major < 8:
        print(
            f"error: {script} needs sm80+ for 2:4 sparse tensor cores; this GPU is sm_{major}{minor}",
            file=sys.stderr,
        )
        sys.exit(EXIT_NO_GPU)


def header() -> str:
    from sparse24.timing import device_summary

    facts = device_summary()
    facts["loadavg"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    facts["date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return " | ".join(f"{k} {v}" for k, v in facts.items())


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = [
        "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
        for r in [head, *rows]
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=1))
        print(f"results written to {path}")
