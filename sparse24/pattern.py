"""The 2:4 pattern as plain tensor functions: verify it, and make it (for tests and benchmarks).

A weight `W[N, K]` (out_features × in_features, as `nn.Linear` stores it) is 2:4 sparse when every group of
4 consecutive inputs `W[n, 4g:4g+4]` holds at most 2 non-zeros. That is the granularity the sparse tensor
cores (`mma.sp`), cuSPARSELt and the checkpoints written by `prune-jobs --pattern 2:4` share.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

GROUP = 4
KEEP = 2


@dataclass(frozen=True)
class PatternCheck:
    """Outcome of `check_24`: how many groups of 4 break the pattern, and where the first one is."""

    groups: int
    violations: int
    first_row: int | None = None
    first_col: int | None = None
    reason: str | None = None  # set when the shape itself cannot be 2:4

    @property
    def ok(self) -> bool:
        return self.violations == 0 and self.reason is None

    def describe(self) -> str:
        if self.reason is not None:
            return self.reason
        if self.ok:
            return f"all {self.groups} groups of 4 hold at most 2 non-zeros"
        return (
            f"{self.violations} of {self.groups} groups of 4 inputs hold more than 2 non-zeros "
            f"(first at output row {self.first_row}, input columns {self.first_col}-{self.first_col + 3})"
        )


def check_24(weight: torch.Tensor) -> PatternCheck:
    """Count the groups of 4 consecutive inputs (along dim 1) of a 2-D weight with more than 2 non-zeros."""
    if weight.dim() != 2:
        return PatternCheck(0, 0, reason=f"expected a 2-D weight, got shape {tuple(weight.shape)}")
    n, k = weight.shape
    if k % GROUP:
        return PatternCheck(0, 0, reason=f"input dimension {k} is not a multiple of {GROUP}")
    nonzeros = (weight.reshape(n, k // GROUP, GROUP) != 0).sum(dim=-1)  # [N, K/4]
    bad = nonzeros > KEEP
    violations = int(bad.sum())
    if violations == 0:
        return PatternCheck(groups=nonzeros.numel(), violations=0)
    first = int(bad.reshape(-1).nonzero()[0])
    row, group = divmod(first, k // GROUP)
    return PatternCheck(nonzeros.numel(), violations, first_row=row, first_col=group * GROUP)


def prune_24(weight: torch.Tensor) -> torch.Tensor:
    """Keep the 2 largest-magnitude entries of every group of 4 inputs; a copy, the input is untouched.

    Ties keep the lower index (topk is stable on CPU and CUDA for these sizes), so the result is
    deterministic. This is magnitude pruning, the simplest 2:4 rule: it exists to make test and benchmark
    weights, the real pruning methods live in `prune_jobs`.
    """
    n, k = weight.shape
    if k % GROUP:
        raise ValueError(f"input dimension {k} is not a multiple of {GROUP}")
    groups = weight.reshape(n, k // GROUP, GROUP)
    keep = groups.abs().topk(KEEP, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return torch.where(mask, groups, torch.zeros_like(groups)).reshape(n, k)  # +0.0, never -0.0
