"""`prune_report.json` (schema_version 1, docs/contracts.md): the model, written atomically."""

from __future__ import annotations

import os
import platform
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

SCHEMA_VERSION = 1
REPORT_FILE = "prune_report.json"


class ModelInfo(BaseModel):
    source: str
    sha256: str
    architecture: str
    parameters: int
    nonzero_parameters: int


class CalibrationInfo(BaseModel):
    source: str
    samples: int
    seqlen: int
    seed: int
    tokens: int
    notes: list[str] = Field(default_factory=list)


class LayerReport(BaseModel):
    """One pruned matrix."""

    name: str
    shape: list[int]
    sparsity: float
    relative_output_error: float | None  # ‖Y_pruned − Y_dense‖ / ‖Y_dense‖ on the calibration inputs
    nm_valid: bool | None  # None for unstructured


class NMCheckReport(BaseModel):
    pattern: str
    valid: bool
    groups: int
    violations: int


class PerplexityReport(BaseModel):
    dense: float | None
    pruned: float
    text: str
    seqlen: int
    windows: int


class PruneReport(BaseModel):
    schema_version: int = SCHEMA_VERSION
    variant: str
    model: ModelInfo
    method: str
    pattern: str
    sparsity: float
    quantization: str | None
    quantization_group_size: int | None = None
    calibration: CalibrationInfo | None
    within_layer: str | None = None
    layers: list[LayerReport]
    nm_check: NMCheckReport | None
    perplexity: PerplexityReport | None
    timings_s: dict[str, float]  # wall time per phase
    cpu_timings_s: dict[str, float] = Field(default_factory=dict)  # CPU time (all threads) per phase
    load_average: list[float] = Field(default_factory=list)  # 1/5/15-min load when the report was written
    versions: dict[str, str]
    command: str
    created_at: str

    def write(self, directory: Path) -> Path:
        """Write `directory/prune_report.json` atomically (a reader never sees half a file)."""
        target = directory / REPORT_FILE
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{REPORT_FILE}.")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(self.model_dump_json(indent=2) + "\n")
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def read(cls, directory: Path) -> PruneReport:
        return cls.model_validate_json((directory / REPORT_FILE).read_text())


def variant_label(pattern: str, sparsity: float, quantization: str | None) -> str:
    """`sparse-2:4`, `sparse-2:4-int8`, `sparse-unstructured-50` (percent of zeros)."""
    shape = pattern if pattern != "unstructured" else f"unstructured-{round(sparsity * 100):d}"
    return f"sparse-{shape}" + (f"-{quantization}" if quantization else "")


def library_versions() -> dict[str, str]:
    import torch
    import transformers

    from prune_jobs import __version__

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sparsefleet": __version__,
    }
    try:
        import compressed_tensors

        versions["compressed_tensors"] = compressed_tensors.__version__
    except ImportError:
        pass
    return versions


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
