"""Width pruning: which FFN channels and attention heads go, and the surgery on a state dict and a config.

Importance is activation-aware, Wanda-style, at the granularity removed:
- FFN channel j (a row of gate/up, a column of down): s_j = ‖X_j‖₂ · ‖W_down[:, j]‖₂, with X_j the
  channel's activation entering down_proj over all calibration tokens. It is the size of the channel's
  contribution to the block output; a channel that never fires scores 0.
- attention head h: the same score for each of the head's head_dim input columns of o_proj, combined as
  sqrt(Σ_c s_c²); a KV group scores sqrt(Σ over its query heads of s_h²).

Widths stay **uniform across layers**: every layer keeps the same number of channels and heads (each layer
its own best ones), so the result is a standard config (`intermediate_size`, `num_attention_heads`,
`num_key_value_heads`, explicit `head_dim`) that transformers and vLLM both load. Grouped-query attention
stays consistent: `--heads-mode queries` removes the same number of query heads from every KV group,
`--heads-mode groups` removes whole KV groups with their query heads. Query heads keep their order, so head
j of the result still belongs to KV head j // (heads per group).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from prune_jobs.errors import PruneJobError
from prune_jobs.structured.importance import BlockProfile
from prune_jobs.structured.spec import HeadsMode, StructuredSpec

ATTENTION = {
    "q": "self_attn.q_proj",
    "k": "self_attn.k_proj",
    "v": "self_attn.v_proj",
    "o": "self_attn.o_proj",
}
FFN = {"gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}


@dataclass(frozen=True)
class HeadLayout:
    heads: int
    kv_heads: int
    head_dim: int

    @property
    def per_group(self) -> int:
        return self.heads // self.kv_heads


@dataclass(frozen=True)
class WidthPlan:
    """Per layer, the sorted indices that stay (None: that part is untouched)."""

    channels: list[torch.Tensor] | None  # kept intermediate channels
    q_heads: list[list[int]] | None  # kept query heads
    kv_heads: list[list[int]] | None  # kept KV heads


def watched_modules(spec: StructuredSpec) -> tuple[str, ...]:
    """The linear layers whose input energy the importance pass must record for this spec."""
    return ((FFN["down"],) if spec.width is not None else ()) + (
        (ATTENTION["o"],) if spec.heads is not None else ()
    )


def check_layout(block: nn.Module, spec: StructuredSpec, architecture: str) -> None:
    """One line naming what is missing when the blocks are not Llama-style (gated FFN, q/k/v/o attention)."""
    names = {name for name, m in block.named_modules() if isinstance(m, nn.Linear)}
    needed = (list(FFN.values()) if spec.width is not None else []) + (
        list(ATTENTION.values()) if spec.heads is not None else []
    )
    missing = [n for n in needed if n not in names]
    if missing:
        raise PruneJobError(
            f"--method width supports Llama-style blocks (mlp.gate_proj/up_proj/down_proj, "
            f"self_attn.q_proj/k_proj/v_proj/o_proj: Llama, Mistral, Qwen2, ...); {architecture} blocks lack "
            f"{', '.join(missing)}"
        )


def head_layout(config: object) -> HeadLayout:
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return HeadLayout(heads, kv_heads, head_dim)


def kept_channel_count(width: float, intermediate: int) -> int:
    removed = round(width * intermediate)
    if removed == 0:
        raise PruneJobError(f"--width {width:g} of {intermediate} FFN channels rounds to 0 channels removed")
    if removed >= intermediate:
        raise PruneJobError(f"--width {width:g} would remove all {intermediate} FFN channels")
    return intermediate - removed


def heads_removed_per_unit(heads: float, mode: HeadsMode, layout: HeadLayout) -> int:
    """How many query heads leave each KV group (mode queries) or how many KV groups leave (mode groups);
    a fraction that cannot be cut consistently with the grouping is a one-line error listing those that
    can."""
    removed = round(heads * layout.heads)
    unit = layout.kv_heads if mode == "queries" else layout.per_group  # query heads removed per step
    steps = layout.heads // unit  # steps that would remove every query head
    grouping = f"{layout.heads} query heads share {layout.kv_heads} KV heads ({layout.per_group} per group)"
    if mode == "queries" and layout.per_group == 1:
        raise PruneJobError(
            f"--heads with --heads-mode queries: {grouping}, so removing query heads means removing KV "
            "groups; use --heads-mode groups"
        )
    valid = ", ".join(f"{k * unit / layout.heads:.3g}" for k in range(1, steps))
    how = "one from every KV group" if mode == "queries" else "whole KV groups"
    if not valid:
        raise PruneJobError(
            f"--heads with --heads-mode {mode}: {grouping}; no head can go without all of them"
        )
    if removed == 0 or removed % unit != 0 or removed >= layout.heads:
        raise PruneJobError(
            f"--heads {heads:g} removes {removed} of {layout.heads} query heads, which is not divisible into "
            f"the KV groups: {grouping}; --heads-mode {mode} removes {unit} at a time ({how}): "
            f"use --heads {valid}" + (" or the other --heads-mode" if mode == "queries" else "")
        )
    return removed // unit


def plan_width(
    spec: StructuredSpec,
    profiles: list[BlockProfile],
    blocks: nn.ModuleList,
    config: object,
) -> WidthPlan:
    """Choose, per layer, the channels and heads that stay (uniform counts across layers)."""
    channels = None
    if spec.width is not None:
        keep = kept_channel_count(spec.width, config.intermediate_size)
        channels = []
        for block, profile in zip(blocks, profiles, strict=True):
            down = block.get_submodule(FFN["down"]).weight.detach()  # [hidden, intermediate]
            scores = channel_scores(down, profile.input_energy[FFN["down"]])
            channels.append(torch.sort(torch.topk(scores, keep).indices).values)
    q_heads = kv_heads = None
    if spec.heads is not None:
        layout = head_layout(config)
        per_unit = heads_removed_per_unit(spec.heads, spec.heads_mode, layout)
        q_heads, kv_heads = [], []
        for block, profile in zip(blocks, profiles, strict=True):
            o_proj = block.get_submodule(ATTENTION["o"]).weight.detach()  # [hidden, heads * head_dim]
            scores = head_scores(o_proj, profile.input_energy[ATTENTION["o"]], layout)
            q, kv = choose_heads(scores, layout, spec.heads_mode, per_unit)
            q_heads.append(q)
            kv_heads.append(kv)
    return WidthPlan(channels, q_heads, kv_heads)


def channel_scores(weight: torch.Tensor, input_energy: torch.Tensor) -> torch.Tensor:
    """[in_features] ‖X_j‖₂ · ‖W[:, j]‖₂ for a linear layer's weight [out, in] and Σ_t x_tj² [in]."""
    return input_energy.sqrt().to(torch.float32) * torch.linalg.vector_norm(weight.float(), dim=0)


def head_scores(o_weight: torch.Tensor, input_energy: torch.Tensor, layout: HeadLayout) -> torch.Tensor:
    """[heads] sqrt(Σ over the head's o_proj input columns of their channel score²)."""
    per_column = channel_scores(o_weight, input_energy)  # [heads * head_dim]
    return per_column.reshape(layout.heads, layout.head_dim).square().sum(dim=1).sqrt()


def choose_heads(
    scores: torch.Tensor, layout: HeadLayout, mode: HeadsMode, per_unit: int
) -> tuple[list[int], list[int]]:
    """(kept query heads, kept KV heads), both sorted. scores: [heads]."""
    by_group = scores.reshape(layout.kv_heads, layout.per_group)  # query head h is in group h // per_group
    if mode == "queries":
        keep = layout.per_group - per_unit
        local = torch.sort(torch.topk(by_group, keep, dim=1).indices, dim=1).values  # [kv_heads, keep]
        q = (local + torch.arange(layout.kv_heads)[:, None] * layout.per_group).flatten().tolist()
        return q, list(range(layout.kv_heads))
    group_scores = by_group.square().sum(dim=1).sqrt()  # [kv_heads]
    kv = sorted(torch.topk(group_scores, layout.kv_heads - per_unit).indices.tolist())
    q = [g * layout.per_group + j for g in kv for j in range(layout.per_group)]
    return q, kv


def shrink_width(
    state: dict[str, torch.Tensor], config: object, prefix: str, plan: WidthPlan
) -> tuple[dict[str, torch.Tensor], object]:
    """(state dict, config) with only the planned channels/heads of every layer."""
    state = dict(state)
    new_config = copy.deepcopy(config)
    layout = head_layout(config)
    for layer in range(config.num_hidden_layers):
        base = f"{prefix}.{layer}."
        if plan.channels is not None:
            kept = plan.channels[layer]
            _take(state, base + FFN["gate"], kept, dim=0)
            _take(state, base + FFN["up"], kept, dim=0)
            _take(state, base + FFN["down"], kept, dim=1)
        if plan.q_heads is not None and plan.kv_heads is not None:
            q_rows = _head_rows(plan.q_heads[layer], layout.head_dim)
            kv_rows = _head_rows(plan.kv_heads[layer], layout.head_dim)
            _take(state, base + ATTENTION["q"], q_rows, dim=0)
            _take(state, base + ATTENTION["k"], kv_rows, dim=0)
            _take(state, base + ATTENTION["v"], kv_rows, dim=0)
            _take(state, base + ATTENTION["o"], q_rows, dim=1)
    if plan.channels is not None:
        new_config.intermediate_size = int(plan.channels[0].numel())
    if plan.q_heads is not None and plan.kv_heads is not None:
        new_config.num_attention_heads = len(plan.q_heads[0])
        new_config.num_key_value_heads = len(plan.kv_heads[0])
        new_config.head_dim = layout.head_dim  # no longer hidden_size // heads
    return state, new_config


def _head_rows(heads: list[int], head_dim: int) -> torch.Tensor:
    return (torch.tensor(heads)[:, None] * head_dim + torch.arange(head_dim)).flatten()


def _take(state: dict[str, torch.Tensor], module: str, index: torch.Tensor, dim: int) -> None:
    """Keep `index` along `dim` of module.weight (and along the bias for output rows, dim 0)."""
    weight = state[module + ".weight"]
    state[module + ".weight"] = weight.index_select(dim, index).contiguous()
    bias = state.get(module + ".bias")
    if bias is not None and dim == 0:
        state[module + ".bias"] = bias.index_select(0, index).contiguous()
