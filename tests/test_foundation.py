"""The embedded model converts into a plain HF checkpoint and the fixtures everyone builds on load."""

import json
import subprocess
import sys

import pytest


def test_embedded_model_is_plain_float_checkpoint(embedded_model_dir):
    config = json.loads((embedded_model_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama"
    assert config["num_hidden_layers"] == 30 and config["hidden_size"] == 576


def test_tiny_llama_loads_and_generates(tiny_llama_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    ids = tok("hello world", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 4


@pytest.mark.parametrize("bad", ["embedded:no-such-model", "/nonexistent/dir"])
def test_fetch_model_bad_source_is_one_line_error(bad):
    proc = subprocess.run(
        [sys.executable, "-m", "prune_jobs", "fetch-model", bad], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error:")
    assert "Traceback" not in proc.stderr
