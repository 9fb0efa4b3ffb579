"""Pure tensor functions for sparsity masks. A mask here is a *keep* mask: bool, True where a weight survives.

Convention for N:M (the one documented in docs/pruning.md): "N:M keeps N of every M consecutive input weights
of a row", i.e. along the last (input) dimension of an `nn.Linear` weight `[out_features, in_features]`.
2:4 keeps 2 of every 4 (50% sparse), 1:4 keeps 1 (75% sparse), 4:8 keeps 4 of 8.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

_NM_RE = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


@dataclass(frozen=True)
class NMPattern:
    """N kept out of every M consecutive input weights of a row."""

    n: int
    m: int

    def __post_init__(self) -> None:
        if self.m < 2 or self.n < 1 or self.n >= self.m:
            raise ValueError(f"N:M pattern {self.n}:{self.m} needs 1 <= N < M (N is the number kept)")

    @property
    def sparsity(self) -> float:
        return 1.0 - self.n / self.m

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


def parse_pattern(text: str) -> NMPattern | None:
    """`"unstructured"` → None; `"N:M"` → NMPattern. ValueError (naming what is allowed) otherwise."""
    if text.strip().lower() == "unstructured":
        return None
    match = _NM_RE.match(text)
    if match is None:
        raise ValueError(f"unknown pattern {text!r}; use 'unstructured' or N:M such as 2:4 (N kept of M)")
    return NMPattern(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True)
class SparsityTarget:
    """What one matrix should look like after pruning: N:M, or unstructured at `sparsity` per output row."""

    pattern: NMPattern | None
    sparsity: float

    @classmethod
    def of(cls, pattern: NMPattern | None, sparsity: float | None) -> SparsityTarget:
        if pattern is not None:
            return cls(pattern, pattern.sparsity)
        if sparsity is None or not 0.0 < sparsity < 1.0:
            raise ValueError(f"sparsity must be in (0, 1), got {sparsity}")
        return cls(None, sparsity)

    @property
    def label(self) -> str:
        return "unstructured" if self.pattern is None else str(self.pattern)


def pruned_per_row(in_features: int, sparsity: float) -> int:
    """How many weights of a row an unstructured mask removes (rounded, so 0.5 of 576 is exactly 288)."""
    return int(round(in_features * sparsity))


def unstructured_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep mask removing the `sparsity` fraction of lowest scores in every row. scores: [rows, cols]."""
    rows, cols = scores.shape
    k = pruned_per_row(cols, sparsity)
    keep = torch.ones(rows, cols, dtype=torch.bool, device=scores.device)
    if k > 0:
        lowest = torch.topk(scores, k, dim=1, largest=False).indices  # [rows, k]
        keep.scatter_(1, lowest, False)
    return keep


def nm_mask(scores: torch.Tensor, pattern: NMPattern) -> torch.Tensor:
    """Keep mask: the N highest scores of every M consecutive columns of each row. scores: [rows, cols]."""
    rows, cols = scores.shape
    check_nm_shape(cols, pattern)
    groups = scores.reshape(rows, cols // pattern.m, pattern.m)  # [rows, groups, m]
    top = torch.topk(groups, pattern.n, dim=2).indices  # [rows, groups, n]
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(2, top, True)
    return keep.reshape(rows, cols)


def mask_for(scores: torch.Tensor, target: SparsityTarget) -> torch.Tensor:
    if target.pattern is None:
        return unstructured_mask(scores, target.sparsity)
    return nm_mask(scores, target.pattern)


def check_nm_shape(in_features: int, pattern: NMPattern) -> None:
    if in_features % pattern.m != 0:
        raise ValueError(f"pattern {pattern} needs in_features divisible by {pattern.m}, got {in_features}")


@dataclass(frozen=True)
class NMCheck:
    groups: int
    violations: int  # groups with more than N non-zeros

    @property
    def valid(self) -> bool:
        return self.violations == 0


def nm_check(weight: torch.Tensor, pattern: NMPattern) -> NMCheck:
    """Count the M-groups of a [rows, cols] weight that keep more than N non-zeros."""
    rows, cols = weight.shape
    if cols % pattern.m != 0:  # no row can be split into M-groups: every row counts as one violation
        return NMCheck(groups=0, violations=rows)
    nonzero = (weight.reshape(rows, cols // pattern.m, pattern.m) != 0).sum(dim=2)
    return NMCheck(groups=nonzero.numel(), violations=int((nonzero > pattern.n).sum()))


def sparsity_of(weight: torch.Tensor) -> float:
    """Fraction of exact zeros."""
    return float((weight == 0).sum()) / weight.numel()


def row_sparsities(weight: torch.Tensor) -> torch.Tensor:
    """[rows] fraction of zeros in every row."""
    return (weight == 0).float().mean(dim=1)
