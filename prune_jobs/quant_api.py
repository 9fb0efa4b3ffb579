"""The seam between pruning and quantization.

The OBS pass (`methods/sparsegpt.py`) walks a weight matrix column by column, choosing the mask and
spreading each column's error onto the not-yet-processed columns. GPTQ is the same walk with rounding instead
of (or as well as) zeroing, so quantization plugs into that pass through `ColumnQuantizer`: the pass calls
`start_group` before the first column of every group, `quantize` for every column, and afterwards the
quantizer hands back the grid it used (`QuantParams`) so that the checkpoint writer can store integers that
dequantize to exactly the weights the pass produced.

`prune_jobs/quantize.py` implements the schemes (int8 W8A8, 4-bit W4A16) and the compressed-tensors writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import torch

QuantScheme = Literal["int8", "w4a16"]


@dataclass(frozen=True)
class QuantSpec:
    """What the user asked for. `group_size=None` means one scale per output channel (per-channel)."""

    scheme: QuantScheme
    group_size: int | None


@dataclass
class QuantParams:
    """The grid one weight matrix was quantized on.

    scales:      [out_features, n_groups] float32 (n_groups = 1 for per-channel)
    zero_points: [out_features, n_groups] int32, or None for symmetric schemes
    """

    scales: torch.Tensor
    zero_points: torch.Tensor | None
    group_size: int | None


class ColumnQuantizer(Protocol):
    """Per-matrix quantizer driven by the OBS pass, one input column at a time."""

    group_size: int | None

    def start_group(self, weight_group: torch.Tensor) -> None:
        """Fit the grid of the group about to be processed. weight_group: [out_features, cols in group],
        the current (already error-compensated) weights. Per-channel: called once with all columns."""

    def quantize(self, column: torch.Tensor) -> torch.Tensor:
        """column: [out_features] → the dequantized column on the current group's grid (same shape)."""

    def params(self) -> QuantParams:
        """The scales/zero-points used for every group, in column order."""
