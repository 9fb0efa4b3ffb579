"""Depth pruning: which decoder layers go (lowest block influence, or an explicit list) and the surgery that
drops them from a state dict and a config, renumbering the survivors 0..n−1 so the result is an ordinary
checkpoint with fewer layers."""

from __future__ import annotations

import copy
import re

import torch

from prune_jobs.errors import PruneJobError
from prune_jobs.structured.spec import StructuredSpec

# Per-layer config lists that must shrink with the layers (Gemma/Qwen-style sliding/full attention plans).
PER_LAYER_CONFIG_LISTS = ("layer_types",)


def layers_to_remove(spec: StructuredSpec, influence: list[float] | None, n_layers: int) -> list[int]:
    """The sorted indices of the layers to remove, validated against the model's `n_layers`."""
    if spec.layers is None:
        count = removal_count(spec.remove_layers, n_layers)
        if influence is None:
            raise PruneJobError("--remove-layers ranks layers by their influence: it needs --calibration")
        return lowest_influence(influence, count)
    bad = [i for i in spec.layers if i >= n_layers]
    if bad:
        raise PruneJobError(
            f"--layers: the model has {n_layers} decoder layers (0..{n_layers - 1}); "
            f"{','.join(map(str, bad))} does not exist"
        )
    if len(spec.layers) >= n_layers:
        raise PruneJobError(f"--layers would remove all {n_layers} decoder layers; keep at least one")
    return list(spec.layers)


def removal_count(remove_layers: float | None, n_layers: int) -> int:
    """`--remove-layers N` (whole number) or a fraction of `n_layers`, rounded to the nearest layer."""
    if remove_layers is None:
        raise PruneJobError("--method depth needs --remove-layers or --layers")
    count = int(remove_layers) if remove_layers >= 1 else round(remove_layers * n_layers)
    if count == 0:
        raise PruneJobError(
            f"--remove-layers {remove_layers:g} of {n_layers} layers rounds to 0 layers; "
            f"the smallest step is 1/{n_layers} = {1 / n_layers:.3f}"
        )
    if count >= n_layers:
        raise PruneJobError(
            f"--remove-layers {remove_layers:g} would remove all {n_layers} decoder layers; keep at least one"
        )
    return count


def lowest_influence(influence: list[float], count: int) -> list[int]:
    """Indices of the `count` layers of lowest block influence (ties: the later layer goes first)."""
    order = sorted(range(len(influence)), key=lambda i: (influence[i], -i))
    return sorted(order[:count])


def drop_layers(
    state: dict[str, torch.Tensor], config: object, prefix: str, removed: list[int]
) -> tuple[dict[str, torch.Tensor], object]:
    """(state dict, config) without the `removed` layers; keys `{prefix}.{i}.…` renumbered densely."""
    n_layers = config.num_hidden_layers
    kept = [i for i in range(n_layers) if i not in set(removed)]
    new_index = {old: new for new, old in enumerate(kept)}
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.(.+)$")
    new_state = {}
    for key, tensor in state.items():
        match = pattern.match(key)
        if match is None:
            new_state[key] = tensor
        elif int(match.group(1)) in new_index:
            new_state[f"{prefix}.{new_index[int(match.group(1))]}.{match.group(2)}"] = tensor
    new_config = copy.deepcopy(config)
    new_config.num_hidden_layers = len(kept)
    for name in PER_LAYER_CONFIG_LISTS:
        values = getattr(new_config, name, None)
        if isinstance(values, list | tuple) and len(values) == n_layers:
            setattr(new_config, name, [values[i] for i in kept])
    return new_state, new_config
