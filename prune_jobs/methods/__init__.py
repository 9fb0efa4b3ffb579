"""Pruning rules, one module each, behind a plain dict registry.

Every rule has the same signature: `prune(weight [out, in], stats, target, quantizer=None) -> new weight`,
with exact zeros at the pruned positions. `stats` is the layer's `LinearStats` (None for magnitude without
calibration data).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from prune_jobs.masks import SparsityTarget
from prune_jobs.methods import magnitude, sparsegpt, wanda
from prune_jobs.quant_api import ColumnQuantizer
from prune_jobs.stats import LinearStats

PruneFn = Callable[[torch.Tensor, LinearStats | None, SparsityTarget, ColumnQuantizer | None], torch.Tensor]


@dataclass(frozen=True)
class PruneMethod:
    name: str
    prune: PruneFn
    needs_calibration: bool  # to choose the mask (magnitude uses data only for the error report)
    needs_hessian: bool  # the full X^T X (quantization always needs it too)
    needs_input_norms: bool = False  # ‖X_j‖₂ per input feature (skipped otherwise: ~1.4% of SparseGPT's CPU)


METHODS: dict[str, PruneMethod] = {
    "magnitude": PruneMethod("magnitude", magnitude.prune, needs_calibration=False, needs_hessian=False),
    "wanda": PruneMethod(
        "wanda", wanda.prune, needs_calibration=True, needs_hessian=False, needs_input_norms=True
    ),
    "sparsegpt": PruneMethod("sparsegpt", sparsegpt.prune, needs_calibration=True, needs_hessian=True),
}


def get_method(name: str) -> PruneMethod:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}") from None
