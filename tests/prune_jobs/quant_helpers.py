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


def run_vllm(*model_dirs: Path, timeout: int = 420) -> list[dict]:
    cmd = [sys.executable, str(PROBE), *(f"--model={d}" for d in model_dirs)]
    cmd += [f"--prompt={p}" for p in PROMPTS]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("VLLM_PROBE ")]
    return [json.loads(ln.removeprefix("VLLM_PROBE ")) for ln in lines]


def hf_prompt_logprobs(model, token_ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logp = model(torch.tensor([token_ids])).logits[0].log_softmax(-1)
    return logp[torch.arange(len(token_ids) - 1), torch.tensor(token_ids[1:])]


def simulate_dynamic_int8_activations(model) -> None:
    """W8A8's other half, the way the checkpoint declares it: every quantized linear's input rounded per token
    to symmetric int8 (scale = max|x| / 127) before the matmul."""

    def quantize_input(_module, args):
        x = args[0]
        scale = x.abs().amax(dim=-1, keepdim=True) / 127
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return (torch.round(x / scale).clamp(-128, 127) * scale,)

    for name, linear in model.named_modules():
        if isinstance(linear, torch.nn.Linear) and ".layers." in name:
            linear.register_forward_pre_hook(quantize_input)


def load_dequantized(model_dir: Path):
    """A compressed-tensors checkpoint loaded by transformers with its weights decompressed to float."""
    from transformers import AutoModelForCausalLM
    from transformers.utils.quantization_config import CompressedTensorsConfig

    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, quantization_config=CompressedTensorsConfig(dequantize=True)
    )
    return model.eval()
