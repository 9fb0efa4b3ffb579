"""One pass of the calibration activations through the *dense* decoder blocks, recording what structured
pruning ranks by:

- **block influence** (ShortGPT, Men et al., 2024): BI_i = 1 − mean over calibration tokens of
  cos(h_in, h_out), the cosine similarity between the hidden state entering block i and the one leaving it.
  A block whose output points where its input did changes little and is the cheapest to drop.
- the **input energy of chosen linear layers**, Σ_t x_tj² per input feature j (what Wanda calls ‖X_j‖₂²),
  for the FFN down projection (one feature per intermediate channel) and the attention output projection
  (head_dim features per head): the activation half of the width importance.

Only one block's activations live in memory: each block's outputs replace its inputs, batch by batch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from prune_jobs.block_inputs import BlockInputs

log = logging.getLogger(__name__)


@dataclass
class BlockProfile:
    influence: float  # 1 − mean cos(h_in, h_out) over all calibration tokens
    input_energy: dict[str, torch.Tensor] = field(default_factory=dict)  # watched name → [in_features] f64


def profile_blocks(
    blocks: nn.ModuleList, inputs: BlockInputs, watch: tuple[str, ...] = (), *, progress: bool = True
) -> list[BlockProfile]:
    """Run every block on `inputs` (consumed: its hidden states end as the last block's outputs).
    `watch`: module names inside a block (e.g. "mlp.down_proj") whose input energy is recorded."""
    from tqdm import tqdm

    profiles = []
    started = time.perf_counter()
    bar = tqdm(blocks, desc="importance", unit="block", disable=None if progress else True)
    with torch.no_grad():
        for block in bar:
            modules = dict(block.named_modules())
            energy = {name: torch.zeros(modules[name].in_features, dtype=torch.float64) for name in watch}
            handles = [modules[name].register_forward_pre_hook(_energy_hook(energy[name])) for name in watch]
            cos_sum, tokens = 0.0, 0
            try:
                for index in range(len(inputs)):
                    before = inputs.hidden[index]  # [batch, seqlen, hidden]
                    after = inputs.call(block, index)
                    cos_sum += float(F.cosine_similarity(before, after, dim=-1).sum(dtype=torch.float64))
                    tokens += before.shape[0] * before.shape[1]
                    inputs.hidden[index] = after
            finally:
                for handle in handles:
                    handle.remove()
            profiles.append(BlockProfile(influence=1.0 - cos_sum / max(tokens, 1), input_energy=energy))
            if bar.disable and progress:  # no terminal (logs, CI): one line per block instead
                elapsed = time.perf_counter() - started
                log.info("importance: block %d/%d (%.0f s so far)", len(profiles), len(blocks), elapsed)
    return profiles


def _energy_hook(total: torch.Tensor):  # noqa: ANN202 - a forward pre-hook
    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0].detach().reshape(-1, total.numel())  # [tokens, in_features]
        total.add_(x.square().sum(dim=0, dtype=torch.float64))

    return hook
