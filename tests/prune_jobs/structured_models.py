"""Tiny real Llama checkpoints with a known answer for structured pruning: an identity-like layer, dead FFN
channels, silent attention heads. Removing exactly those parts leaves the model's function unchanged, so a
test can check both *what* was removed and that the surgery is exact."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import torch

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json")


def tiny_variant(
    source: Path,
    out: Path,
    edit: Callable[[torch.nn.Module], None],
    *,
    layers: int | None = None,
    seed: int = 0,
) -> Path:
    """A random Llama with `source`'s config (optionally `layers` deep), weights edited by `edit`, saved
    with `source`'s tokenizer files."""
    from transformers import AutoConfig, LlamaForCausalLM

    config = AutoConfig.from_pretrained(source)
    if layers is not None:
        config.num_hidden_layers = layers
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    with torch.no_grad():
        edit(model)
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, out / name)
    return out


def make_identity_layer(index: int) -> Callable[[torch.nn.Module], None]:
    """Layer `index` adds nothing to the residual stream (o_proj and down_proj zero): block influence 0."""

    def edit(model: torch.nn.Module) -> None:
        layer = model.model.layers[index]
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.down_proj.weight.zero_()

    return edit


def kill_channels(channels: list[int]) -> Callable[[torch.nn.Module], None]:
    """FFN `channels` never fire in any layer: gate rows zero → silu(0) · up = 0 entering down_proj."""

    def edit(model: torch.nn.Module) -> None:
        for layer in model.model.layers:
            layer.mlp.gate_proj.weight[channels] = 0.0

    return edit


def silence_query_heads(heads: list[int]) -> Callable[[torch.nn.Module], None]:
    """Query `heads` contribute nothing: their o_proj input columns are zero in every layer."""

    def edit(model: torch.nn.Module) -> None:
        d = model.config.head_dim
        for layer in model.model.layers:
            for h in heads:
                layer.self_attn.o_proj.weight[:, h * d : (h + 1) * d] = 0.0

    return edit


def silence_kv_group(group: int) -> Callable[[torch.nn.Module], None]:
    """KV head `group` has zero values in every layer, so all its query heads output zeros."""

    def edit(model: torch.nn.Module) -> None:
        d = model.config.head_dim
        for layer in model.model.layers:
            layer.self_attn.v_proj.weight[group * d : (group + 1) * d] = 0.0

    return edit


def combine(*edits: Callable[[torch.nn.Module], None]) -> Callable[[torch.nn.Module], None]:
    def edit(model: torch.nn.Module) -> None:
        for one in edits:
            one(model)

    return edit


def logits(
    model_dir: Path, text: str = "The river flows past the old stone bridge into the city"
) -> torch.Tensor:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ids = AutoTokenizer.from_pretrained(model_dir)(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return model(input_ids=ids).logits[0]
