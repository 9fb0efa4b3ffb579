"""Shared fixtures: real models only. The embedded SmolLM2 (converted once, cached) and a tiny random Llama
that reuses SmolLM2's tokenizer so that vLLM and transformers treat it as an ordinary checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before anything imports torch (OpenMP reads it once): on a machine with more runnable threads than cores,
# spinning OpenMP threads made the structured-pruning tests 2.5x slower (docs/structured.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "wikitext-2"


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    from prune_jobs.embedded import embedded_model_dir as resolve

    return resolve("embedded:smollm2-135m", quiet=True)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory, embedded_model_dir: Path) -> Path:
    """A 2-layer random Llama (hidden 256, head_dim 64, GQA 4/2) with SmolLM2's tokenizer, as safetensors."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.float32)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def wikitext_dir() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared WikiText-2 data not found at {SHARED_DATA}")
    return SHARED_DATA
