"""Magnitude pruning: drop the weights of smallest |w| (per output row, or per N:M group). Needs no data."""

from __future__ import annotations

import torch

from prune_jobs.masks import SparsityTarget, mask_for
from prune_jobs.methods.common import apply_fixed_mask
from prune_jobs.quant_api import ColumnQuantizer
from prune_jobs.stats import LinearStats


def scores(weight: torch.Tensor) -> torch.Tensor:
    """[out, in] importance |W|."""
    return weight.detach().abs().to(torch.float32)


def prune(weight: torch.Tensor, stats: LinearStats | None, target: SparsityTarget,
          quantizer: ColumnQuantizer | None = None) -> torch.Tensor:
    return apply_fixed_mask(weight, mask_for(scores(weight), target), stats, quantizer)
