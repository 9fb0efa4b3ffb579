"""What magnitude and Wanda share: once their score has chosen a mask, apply it — plainly, or through the OBS
pass when quantizing (GPTQ with a fixed mask), so the rounding error is compensated on the kept weights."""

from __future__ import annotations

import torch

from prune_jobs.methods.sparsegpt import obs_prune
from prune_jobs.quant_api import ColumnQuantizer
from prune_jobs.stats import LinearStats


def apply_fixed_mask(weight: torch.Tensor, keep: torch.Tensor, stats: LinearStats | None,
                     quantizer: ColumnQuantizer | None) -> torch.Tensor:
    """weight: [out, in], keep: bool [out, in] → new weight (float32) with exact zeros where ~keep."""
    if quantizer is None:
        return weight.detach().to(torch.float32) * keep
    if stats is None or not stats.full_hessian:
        raise ValueError("quantizing needs the full Hessian of the layer inputs (calibration data)")
    return obs_prune(weight, stats.hessian(), keep_mask=keep, quantizer=quantizer)
