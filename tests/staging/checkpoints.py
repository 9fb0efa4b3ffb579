"""Checkpoints for the live staging test: a dense tiny Llama and a 2:4 copy pruned with plain torch (no
prune_jobs import: staging only sees the checkpoint contract), each with a prune_report.json whose quality
fields feed `sparsefleet_variant_info`."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

DECODER_LINEAR = re.compile(r"model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj\.weight$")
SAMPLE_TEXT = (
    "The tower is 324 metres tall, about the same height as an 81-storey building, and the tallest "
    "structure in Paris. Its base is square, measuring 125 metres on each side. During its "
    "construction, the Eiffel Tower surpassed the Washington Monument to become the tallest man-made "
    "structure in the world."
)


def prune_2_of_4(weight: torch.Tensor) -> torch.Tensor:
    """Keep the 2 largest-magnitude weights of every 4 consecutive inputs of each output row: (out, in)."""
    groups = weight.reshape(weight.shape[0], -1, 4)  # (out, in/4, 4)
    keep = groups.abs().topk(2, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return (groups * mask).reshape(weight.shape).contiguous()


def perplexity(model_dir: Path, text: str = SAMPLE_TEXT) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        loss = model(ids, labels=ids).loss
    return math.exp(loss.item())


def _report(
    variant: str, method: str, pattern: str | None, sparsity: float, ppl: float, dense_ppl: float
) -> dict:
    return {
        "schema_version": 1,
        "variant": variant,
        "method": method,
        "pattern": pattern,
        "sparsity": sparsity,
        "quantization": None,
        "perplexity": {"dense": round(dense_ppl, 2), "pruned": round(ppl, 2), "text": "tests/staging sample"},
        "command": "tests/staging/checkpoints.py",
    }


def dense_and_2_of_4(tiny_llama_dir: Path, out: Path) -> dict[str, Path]:
    """Copy the tiny Llama as `dense` and write its 2:4 magnitude-pruned copy as `sparse-2-4` under `out`."""
    dense, sparse = out / "dense", out / "sparse-2-4"
    shutil.copytree(tiny_llama_dir, dense)
    shutil.copytree(tiny_llama_dir, sparse, ignore=shutil.ignore_patterns("*.safetensors"))
    for weights in tiny_llama_dir.glob("*.safetensors"):
        tensors = load_file(weights)
        pruned = {name: prune_2_of_4(t) if DECODER_LINEAR.match(name) else t for name, t in tensors.items()}
        assert any(DECODER_LINEAR.match(name) for name in tensors), "no decoder linears found"
        save_file(pruned, sparse / weights.name, metadata={"format": "pt"})
    dense_ppl, sparse_ppl = perplexity(dense), perplexity(sparse)
    (dense / "prune_report.json").write_text(
        json.dumps(_report("dense", "none", None, 0.0, dense_ppl, dense_ppl))
    )
    (sparse / "prune_report.json").write_text(
        json.dumps(_report("sparse-2:4", "magnitude", "2:4", 0.5, sparse_ppl, dense_ppl))
    )
    return {"dense": dense, "sparse-2:4": sparse}
