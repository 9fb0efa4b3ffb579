"""`python -m prune_jobs run ... --quant` end to end: prune + GPTQ in one pass, the compressed-tensors
checkpoint, its report, and vLLM-CPU generating from it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prune_jobs.quant.served import load_as_served
from tests.prune_jobs.quant_helpers import hf_prompt_logprobs, run_vllm

pytestmark = pytest.mark.slow  # two pipeline runs in subprocesses, then vLLM

JOBS = {
    "sparsegpt-24-w4a16": ["--method", "sparsegpt", "--pattern", "2:4", "--quant", "w4a16"],
    "wanda-int8": ["--method", "wanda", "--quant", "int8"],
}


def prune_jobs_run(model: Path, calibration: Path, out: Path, args: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "prune_jobs", "run", "--model", str(model), *args,
           "--calibration", str(calibration), "--calibration-samples", "8", "--calibration-seqlen", "128",
           "--output", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def checkpoints(tiny_llama_dir, calib_text, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e-quant")
    for name, args in JOBS.items():
        proc = prune_jobs_run(tiny_llama_dir, calib_text, root / name, args)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return {name: root / name for name in JOBS}


def test_reports_and_configs_say_what_was_done(checkpoints):
    expected = {"sparsegpt-24-w4a16": ("w4a16", "2:4", 128, "pack-quantized"),
                "wanda-int8": ("int8", "unstructured", None, "int-quantized")}
    for name, (scheme, pattern, group, fmt) in expected.items():
        report = json.loads((checkpoints[name] / "prune_report.json").read_text())
        assert (report["quantization"], report["pattern"]) == (scheme, pattern)
        assert report["quantization_group_size"] == group and report["variant"].endswith(scheme)
        qc = json.loads((checkpoints[name] / "config.json").read_text())["quantization_config"]
        assert qc["quant_method"] == "compressed-tensors" and qc["format"] == fmt
        assert (checkpoints[name] / "tokenizer.json").is_file()
        if pattern == "2:4":
            assert qc["sparsity_config"]["sparsity_structure"] == "2:4"


def test_sparsity_survives_gptq_and_packing(checkpoints):
    for name, path in checkpoints.items():
        model = load_as_served(path)
        for module_name, linear in model.named_modules():
            if isinstance(linear, torch.nn.Linear) and ".layers." in module_name:
                w = linear.weight.data
                if name.startswith("sparsegpt-24"):
                    assert ((w.reshape(w.shape[0], -1, 4) == 0).sum(-1) >= 2).all(), module_name
                else:  # Wanda 50% per output row; rounding can only add zeros
                    assert ((w == 0).float().mean(dim=1) >= 0.5).all(), module_name


def test_vllm_generates_from_both_checkpoints(checkpoints):
    results = run_vllm(*checkpoints.values())
    for (name, path), result in zip(checkpoints.items(), results, strict=True):
        assert result["quantization"] == "compressed-tensors"
        assert all(len(ids) == 16 for ids in result["token_ids"]), f"{name}: vLLM stopped generating"
        model = load_as_served(path)  # decompressed weights; W8A8 also rounds activations like vLLM
        for ids, vllm_lp in zip(result["prompt_token_ids"], result["prompt_logprobs"], strict=True):
            diff = (hf_prompt_logprobs(model, ids) - torch.tensor(vllm_lp)).abs().max().item()
            assert diff < (1e-3 if name.endswith("w4a16") else 0.1), f"{name}: logprobs differ by {diff}"
