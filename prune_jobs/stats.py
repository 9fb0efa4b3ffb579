"""Per-linear accumulators over the calibration inputs of one `nn.Linear`.

- Wanda needs the L2 norm of every input feature over all calibration tokens: ‖X_j‖₂ = sqrt(Σ_t x_tj²).
- SparseGPT/GPTQ need the Hessian of the layer-wise squared error, H = X^T X / n_tokens (the reference's
  2/n factor is dropped: the OBS update and the relative dampening are invariant to the scale of H).
- The report's relative output error ‖X ΔW^T‖ / ‖X W^T‖ equals sqrt(tr(ΔW H ΔW^T) / tr(W H W^T)), so it
  comes from the same Hessian without keeping activations. Methods that do not need the full Hessian get
  one estimated on every `error_stride`-th token, which costs 1/stride of the full accumulation.
"""

from __future__ import annotations

import threading

import numpy as np
import torch


def gram(x: torch.Tensor) -> torch.Tensor:
    """x^T x for x [tokens, d] → [d, d].

    numpy's `dot(a.T, a)` runs BLAS syrk (half the multiplications of a general product; about 2x faster
    than torch's gemm for this shape on the CPU, measured), and releases the GIL so batch threads overlap."""
    a = x.detach().to(torch.float32).contiguous().numpy()
    return torch.from_numpy(np.dot(a.T, a))


class LinearStats:
    """Statistics of the inputs of one linear layer, accumulated batch by batch (thread-safe)."""

    def __init__(
        self, in_features: int, *, full_hessian: bool, error_stride: int = 16, input_norms: bool = True
    ) -> None:
        self.in_features = in_features
        self.full_hessian = full_hessian
        self.error_stride = 1 if full_hessian else error_stride
        self.tokens = 0
        self._sampled_tokens = 0
        # Σ_t x_tj² over all batches; None when the method has no use for input norms
        self._sq_sum = torch.zeros(in_features, dtype=torch.float64) if input_norms else None
        # float64 across batches: batches arrive in thread-timing order, and float32 sums in a different
        # order flipped enough 2:4 choices to move SparseGPT 2:4 perplexity by 2% between identical runs
        # (65.6 / 66.4 / 67.0). float64 has 29 more mantissa bits than the float32 partials, so their sum is
        # exact, and the same in any order, unless two partials differ in magnitude by more than 2^29.
        self._gram = torch.zeros(in_features, in_features, dtype=torch.float64)
        self._hessian: torch.Tensor | None = None
        self._lock = threading.Lock()

    def add(self, x: torch.Tensor) -> None:
        """x: [..., in_features], any leading shape (batch, sequence)."""
        x = x.detach().reshape(-1, self.in_features).to(torch.float32)  # [tokens, in]
        sample = x if self.error_stride == 1 else x[:: self.error_stride]
        # float32 inside a batch (a few thousand pairwise-summed terms), float64 across batches: summing
        # in float64 directly converts every element first and cost as much as a fifth of the Hessian.
        sq_sum = None if self._sq_sum is None else x.square().sum(dim=0).to(torch.float64)
        partial = gram(sample)  # the expensive part, outside the lock
        with self._lock:
            self.tokens += x.shape[0]
            self._sampled_tokens += sample.shape[0]
            if sq_sum is not None:
                self._sq_sum += sq_sum
            self._gram += partial
            self._hessian = None

    def input_norms(self) -> torch.Tensor:
        """[in_features] ‖X_j‖₂ over all tokens seen."""
        if self._sq_sum is None:
            raise RuntimeError("these statistics were collected without input norms (input_norms=False)")
        return self._sq_sum.sqrt().to(torch.float32)

    def hessian(self) -> torch.Tensor:
        """[in, in] X^T X / tokens; exact with `full_hessian`, else estimated on every stride-th token."""
        if self._sampled_tokens == 0:
            raise RuntimeError("no calibration inputs reached this linear layer")
        if self._hessian is None:
            self._hessian = (self._gram / self._sampled_tokens).to(torch.float32)
        return self._hessian


def relative_output_error(dense: torch.Tensor, pruned: torch.Tensor, hessian: torch.Tensor) -> float:
    """‖X (W_p − W)^T‖_F / ‖X W^T‖_F on the inputs summarised by `hessian` = X^T X / n."""
    delta = (pruned - dense).to(torch.float32)  # [out, in]
    num = ((delta @ hessian) * delta).sum()
    den = ((dense.to(torch.float32) @ hessian) * dense).sum()
    if den <= 0:
        return 0.0 if num <= 0 else float("inf")
    return float(num.clamp_min(0).sqrt() / den.sqrt())
