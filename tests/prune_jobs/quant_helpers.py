"""vLLM and transformers helpers shared by the quantization tests (real engines, no fakes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

PROBE = Path(__file__).with_name("vllm_probe.py")
PROMPTS = ["The capital of France is", "The Eiffel Tower is located in the city of"]


def run_vllm(*model_dirs: Path, prompts: list[str] = PROMPTS, timeout: int = 900) -> list[dict]:
    """Greedy generations and prompt log-probabilities of each checkpoint, one vLLM engine at a time."""
    cmd = [sys.executable, str(PROBE), *(f"--model={d}" for d in model_dirs)]
    cmd += [f"--prompt={p}" for p in prompts]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("VLLM_PROBE ")]
    return [json.loads(ln.removeprefix("VLLM_PROBE ")) for ln in lines]


def hf_prompt_logprobs(model, token_ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logp = model(torch.tensor([token_ids])).logits[0].log_softmax(-1)
    return logp[torch.arange(len(token_ids) - 1), torch.tensor(token_ids[1:])]
