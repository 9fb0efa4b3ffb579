"""A fresh model for the shrunken config, holding the surgically reduced state dict — built by the model's
own class, exactly as `from_pretrained` will build it from the saved checkpoint, so that what we evaluate,
heal and save is what transformers and vLLM will load."""

from __future__ import annotations

import torch
from torch import nn

from prune_jobs.model_io import decoder_layers, layer_linears


def rebuild_model(template: nn.Module, config: object, state: dict[str, torch.Tensor]) -> nn.Module:
    """A `type(template)` model for `config` whose parameters are exactly `state` (strict: every key)."""
    from transformers.initialization import no_init_weights

    dtype = next(template.parameters()).dtype
    with no_init_weights():  # every parameter is overwritten below; skip the random init
        model = type(template)(config)
    model.tie_weights()  # skipped under no_init_weights; ties lm_head to the embeddings when config says so
    model.to(dtype)
    model.load_state_dict(state, strict=True)  # tied embeddings/lm_head are one tensor in both
    model.eval()
    return model


def decoder_linear_parameters(model: nn.Module) -> int:
    """Weights of every nn.Linear inside the decoder blocks (what 2:4 and structured pruning shrink)."""
    prefix, blocks = decoder_layers(model)
    return sum(
        m.weight.numel()
        for index, block in enumerate(blocks)
        for m in layer_linears(block, f"{prefix}.{index}").values()
    )
