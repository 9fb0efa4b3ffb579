"""--quant goes through prune_jobs.quantize (the quantization branch) with exactly the agreed API.

The fast test plugs a small round-to-nearest scheme in place of that module to check the wiring (one OBS
pass prunes and quantizes; the writer gets every quantized layer's grid); the real schemes are tested
end to end where the module exists."""

from __future__ import annotations

import importlib.util
import json
import sys
import types

import pytest
import torch
from safetensors.torch import load_file

from prune_jobs.masks import NMPattern, nm_check
from prune_jobs.report import PruneReport
from tests.prune_jobs.helpers import RoundToNearest, run_cli


@pytest.fixture
def recording_quantize(monkeypatch):
    calls: dict[str, object] = {"quantizers": []}
    module = types.ModuleType("prune_jobs.quantize")

    def make_column_quantizer(spec, weight):
        quantizer = RoundToNearest(bits=8 if spec.scheme == "int8" else 4, group_size=spec.group_size)
        calls["quantizers"].append((spec, tuple(weight.shape)))
        return quantizer

    def save_quantized_checkpoint(model, params, spec, out_dir, sparsity_structure):
        calls.update(params=params, spec=spec, structure=sparsity_structure)
        model.save_pretrained(out_dir)

    module.make_column_quantizer = make_column_quantizer
    module.save_quantized_checkpoint = save_quantized_checkpoint
    monkeypatch.setitem(sys.modules, "prune_jobs.quantize", module)
    return calls


def test_quant_runs_in_the_obs_pass_and_reaches_the_writer(
    recording_quantize, tmp_path, tiny_llama_dir, calib_text
):
    out = tmp_path / "q"
    code, _, err = run_cli(
        [
            "run",
            "--model",
            tiny_llama_dir,
            "--method",
            "wanda",
            "--pattern",
            "2:4",
            "--quant",
            "w4a16",
            "--calibration",
            calib_text,
            "--calibration-samples",
            "4",
            "--calibration-seqlen",
            "64",
            "--output",
            out,
        ]
    )
    assert code == 0, err
    calls = recording_quantize
    assert calls["structure"] == "2:4" and calls["spec"].scheme == "w4a16" and calls["spec"].group_size == 128
    assert len(calls["quantizers"]) == 14 and len(calls["params"]) == 14
    weights = load_file(out / "model.safetensors")
    for name, params in calls["params"].items():
        w = weights[f"{name}.weight"]
        assert nm_check(w, NMPattern(2, 4)).valid and float((w == 0).float().mean()) >= 0.5
        scales = params.scales.repeat_interleave(128, dim=1)  # [out, in]
        assert torch.allclose(w / scales, (w / scales).round(), atol=1e-3), name
    report = PruneReport.read(out)
    assert report.quantization == "w4a16" and report.quantization_group_size == 128
    assert report.variant == "sparse-2:4-w4a16"
    assert "sparsefleet_24" not in (out / "config.json").read_text()  # quantized: never the 2:4 marker


def test_group_size_must_divide_the_layers(recording_quantize, tmp_path, tiny_llama_dir, calib_text):
    code, _, err = run_cli(
        [
            "run",
            "--model",
            tiny_llama_dir,
            "--method",
            "sparsegpt",
            "--quant",
            "w4a16",
            "--quant-group-size",
            "96",
            "--calibration",
            calib_text,
            "--output",
            tmp_path / "q",
        ]
    )
    assert code == 2 and "--quant-group-size 96" in err


@pytest.mark.skipif(
    importlib.util.find_spec("prune_jobs.quantize") is None,
    reason="prune_jobs.quantize (quantization branch) not present",
)
@pytest.mark.parametrize("scheme", ["int8", "w4a16"])
def test_real_quantized_checkpoint(scheme, tmp_path, tiny_llama_dir, calib_text):
    out = tmp_path / scheme
    code, _, err = run_cli(
        [
            "run",
            "--model",
            tiny_llama_dir,
            "--method",
            "sparsegpt",
            "--pattern",
            "2:4",
            "--quant",
            scheme,
            "--calibration",
            calib_text,
            "--calibration-samples",
            "4",
            "--calibration-seqlen",
            "64",
            "--output",
            out,
        ]
    )
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "compressed-tensors"
    assert PruneReport.read(out).quantization == scheme
    assert (out / "tokenizer.json").is_file()
