"""The real model: SmolLM2-135M to 2:4 with self-generated calibration (slow: about a minute)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from prune_jobs.masks import NMPattern, nm_check
from prune_jobs.report import PruneReport
from tests.prune_jobs.helpers import run_cli


@pytest.mark.slow
def test_smollm2_sparsegpt_24_end_to_end(tmp_path, embedded_model_dir, wikitext_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "smollm2-24"
    code, _, err = run_cli(
        [
            "run",
            "--model",
            "embedded:smollm2-135m",
            "--method",
            "sparsegpt",
            "--pattern",
            "2:4",
            "--calibration",
            "self",
            "--calibration-samples",
            "16",
            "--calibration-seqlen",
            "128",
            "--eval-text",
            wikitext_dir / "wiki.test.raw.txt",
            "--eval-windows",
            "2",
            "--eval-seqlen",
            "512",
            "--output",
            out,
        ]
    )
    assert code == 0, err
    report = PruneReport.read(out)
    assert report.nm_check.valid and report.sparsity == 0.5 and len(report.layers) == 30 * 7
    assert report.calibration.source == "self" and report.calibration.tokens == 16 * 128
    dense, pruned = report.perplexity.dense, report.perplexity.pruned
    assert dense < pruned < 20 * dense, (dense, pruned)
    assert max(layer.relative_output_error for layer in report.layers) < 1.0  # no collapsed layer

    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(out)
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "Name a colour."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    generated = model.generate(**chat, max_new_tokens=6, do_sample=False)
    assert generated.shape[1] > chat["input_ids"].shape[1]
    for name, module in model.model.layers.named_modules():
        if isinstance(module, torch.nn.Linear):
            assert nm_check(module.weight.detach(), NMPattern(2, 4)).valid, name
    original = load_file(embedded_model_dir / "model.safetensors")
    assert torch.equal(model.get_input_embeddings().weight, original["model.embed_tokens.weight"])
