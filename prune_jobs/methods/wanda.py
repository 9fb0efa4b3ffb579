"""Wanda (Sun et al., 2023): score |W_ij| · ‖X_j‖₂ and compare within each output row (or N:M group).

The input norm ‖X_j‖₂ is taken over every calibration token reaching the layer; no weight update follows.
"""

from __future__ import annotations

import torch

from prune_jobs.masks import SparsityTarget, mask_for
from prune_jobs.methods.common import apply_fixed_mask
from prune_jobs.quant_api import ColumnQuantizer
from prune_jobs.stats import LinearStats


def scores(weight: torch.Tensor, input_norms: torch.Tensor) -> torch.Tensor:
    """weight [out, in], input_norms [in] → [out, in] importance |W| · ‖X‖₂ (broadcast over rows)."""
    return weight.detach().abs().to(torch.float32) * input_norms.to(torch.float32).unsqueeze(0)


def prune(weight: torch.Tensor, stats: LinearStats | None, target: SparsityTarget,
          quantizer: ColumnQuantizer | None = None) -> torch.Tensor:
    if stats is None:
        raise ValueError("wanda needs calibration statistics")
    return apply_fixed_mask(weight, mask_for(scores(weight, stats.input_norms()), target), stats, quantizer)
