"""`prune-jobs compare-masks A B`: how alike two checkpoints' sparsity masks are, matrix by matrix.

A mask is read straight from the stored weights (zero = pruned), so any two checkpoints of the same model
compare: magnitude vs Wanda vs SparseGPT, 2:4 vs unstructured, float or int8. Per matrix and per decoder
block: agreement (fraction of positions where both keep or both prune), Jaccard index of the kept sets, and
the agreement two independent random masks of the same sparsities would reach, for scale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel

from prune_jobs.errors import PruneJobError
from prune_jobs.report import REPORT_FILE, PruneReport


class MaskOverlap(BaseModel):
    name: str
    positions: int
    sparsity_a: float
    sparsity_b: float
    agreement: float
    jaccard_kept: float
    random_agreement: float  # expected agreement of independent random masks at these sparsities


class MaskComparison(BaseModel):
    a: str
    b: str
    overall: MaskOverlap
    blocks: list[MaskOverlap]
    matrices: list[MaskOverlap]


@dataclass
class _Counts:
    positions: int = 0
    kept_a: int = 0
    kept_b: int = 0
    kept_both: int = 0
    pruned_both: int = 0

    def add(self, other: _Counts) -> None:
        for key in vars(self):
            setattr(self, key, getattr(self, key) + getattr(other, key))

    def overlap(self, name: str) -> MaskOverlap:
        n = self.positions
        pa, pb = self.kept_a / n, self.kept_b / n
        union = self.kept_a + self.kept_b - self.kept_both
        return MaskOverlap(
            name=name,
            positions=n,
            sparsity_a=round(1 - pa, 6),
            sparsity_b=round(1 - pb, 6),
            agreement=round((self.kept_both + self.pruned_both) / n, 6),
            jaccard_kept=round(self.kept_both / union, 6) if union else 1.0,
            random_agreement=round(pa * pb + (1 - pa) * (1 - pb), 6),
        )


def compare_masks(dir_a: Path, dir_b: Path) -> MaskComparison:
    a, b = _weights(dir_a), _weights(dir_b)
    in_b = set(_pruned_names(dir_b, b))
    names = [n for n in _pruned_names(dir_a, a) if n in in_b]
    if not names:
        raise PruneJobError(f"{dir_a} and {dir_b} have no pruned matrices in common")
    matrices, blocks, overall = [], {}, _Counts()
    for name in names:
        keep_a, keep_b = _keep(a[name], name), _keep(b[name], name)
        if keep_a.shape != keep_b.shape:
            raise PruneJobError(f"{name}: shapes differ ({list(keep_a.shape)} vs {list(keep_b.shape)})")
        counts = _Counts(
            keep_a.numel(),
            int(keep_a.sum()),
            int(keep_b.sum()),
            int((keep_a & keep_b).sum()),
            int((~keep_a & ~keep_b).sum()),
        )
        matrices.append(counts.overlap(_module_name(name)))
        blocks.setdefault(_block_of(name), _Counts()).add(counts)
        overall.add(counts)
    return MaskComparison(
        a=str(dir_a),
        b=str(dir_b),
        overall=overall.overlap("all"),
        blocks=[c.overlap(n) for n, c in blocks.items()],
        matrices=matrices,
    )


def _weights(directory: Path) -> dict[str, Path]:
    """Tensor name → the safetensors file holding it (2-D weights only, read lazily)."""
    from safetensors import safe_open

    files = sorted(directory.glob("*.safetensors")) if directory.is_dir() else []
    if not files:
        raise PruneJobError(f"{directory}: no *.safetensors files (not a checkpoint directory)")
    found = {}
    for file in files:
        with safe_open(file, framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118 - safe_open handles are not mappings
                if key.endswith(".weight") and len(fh.get_slice(key).get_shape()) == 2:
                    found[key] = file
    return found


def _pruned_names(directory: Path, weights: dict[str, Path]) -> list[str]:
    """The matrices the report lists as pruned, or else every 2-D weight inside numbered blocks."""
    if (directory / REPORT_FILE).is_file():
        listed = [f"{r.name}.weight" for r in PruneReport.read(directory).layers]
        return [n for n in listed if n in weights]
    return [n for n in weights if re.search(r"\.\d+\.", n)]


def _keep(file: Path, name: str) -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(file, framework="pt") as fh:
        return fh.get_tensor(name) != 0


def _module_name(tensor_name: str) -> str:
    return tensor_name.removesuffix(".weight")


def _block_of(tensor_name: str) -> str:
    match = re.match(r"^(.*?\.\d+)\.", tensor_name)
    return match.group(1) if match else "other"
