"""Structured pruning of a loaded model, start to end: check the target fits the model, rank layers or
channels/heads on the calibration activations, cut the state dict and config, rebuild the smaller model."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from prune_jobs.block_inputs import BlockInputs
from prune_jobs.errors import PruneJobError
from prune_jobs.model_io import decoder_layers
from prune_jobs.structured.depth import drop_layers, layers_to_remove, removal_count
from prune_jobs.structured.importance import profile_blocks
from prune_jobs.structured.rebuild import rebuild_model
from prune_jobs.structured.spec import StructuredSpec
from prune_jobs.structured.width import (
    WidthPlan,
    check_layout,
    head_layout,
    heads_removed_per_unit,
    kept_channel_count,
    plan_width,
    shrink_width,
    watched_modules,
)


@dataclass(frozen=True)
class StructuredOutcome:
    model: nn.Module  # the smaller model (a new object; the input model is left as it was)
    removed_layers: list[int]
    influence: list[float] | None  # block influence of every original layer (None without calibration)
    plan: WidthPlan | None


def check_fits(model: nn.Module, spec: StructuredSpec) -> None:
    """Fail with one line, before any long work, when the target cannot be cut from this model."""
    _, blocks = decoder_layers(model)
    config = model.config
    if spec.kind == "depth":
        if spec.layers is None:
            removal_count(spec.remove_layers, len(blocks))
        else:
            layers_to_remove(spec, None, len(blocks))
        return
    architecture = (getattr(config, "architectures", None) or [type(model).__name__])[0]
    check_layout(blocks[0], spec, architecture)
    if spec.width is not None:
        kept_channel_count(spec.width, config.intermediate_size)
    if spec.heads is not None:
        heads_removed_per_unit(spec.heads, spec.heads_mode, head_layout(config))


def prune_structure(
    model: nn.Module, spec: StructuredSpec, inputs: BlockInputs | None, *, progress: bool = True
) -> StructuredOutcome:
    """`inputs`: the calibration activations entering block 0 (consumed); unused (and may be None) for
    an explicit --layers list, which needs no ranking."""
    check_fits(model, spec)
    prefix, blocks = decoder_layers(model)
    profiles = None
    if inputs is not None and not (spec.kind == "depth" and spec.layers is not None):  # an explicit list
        watch = watched_modules(spec) if spec.kind == "width" else ()
        profiles = profile_blocks(blocks, inputs, watch, progress=progress)
    influence = None if profiles is None else [round(p.influence, 6) for p in profiles]
    if spec.kind == "depth":
        removed = layers_to_remove(spec, influence, len(blocks))
        state, config = drop_layers(model.state_dict(), model.config, prefix, removed)
        return StructuredOutcome(rebuild_model(model, config, state), removed, influence, None)
    if profiles is None:
        raise PruneJobError(
            "--method width ranks channels and heads by their activations: it needs --calibration"
        )
    plan = plan_width(spec, profiles, blocks, model.config)
    state, config = shrink_width(model.state_dict(), model.config, prefix, plan)
    return StructuredOutcome(rebuild_model(model, config, state), [], influence, plan)
