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


class StructuredReport(BaseModel):
    """What structured pruning removed (`--method depth|width`); widths are uniform across layers."""

    kind: str  # depth | width
    parameters_before: int
    parameters_after: int
    decoder_linear_parameters_before: int
    decoder_linear_parameters_after: int
    layers_before: int
    layers_after: int
    removed_layers: list[int] = Field(default_factory=list)  # depth: original indices
    block_influence: list[float] | None = None  # per original layer: 1 − mean cos(h_in, h_out)
    intermediate_size_before: int | None = None
    intermediate_size_after: int | None = None
    attention_heads_before: int | None = None
    attention_heads_after: int | None = None
    kv_heads_before: int | None = None
    kv_heads_after: int | None = None
    heads_mode: str | None = None
    perplexity_before_heal: float | None = None


class HealReport(BaseModel):
    """`--heal`: distillation from the dense model on the calibration windows."""

    steps: int
    lr: float
    batch_windows: int
    seqlen: int
    tokens: int
    seconds: float
    kl_before: float  # KL(dense ‖ pruned), nats/token, on the first calibration windows
    kl_after: float
    loss: list[float]  # per step
    plot: str | None = None  # PNG beside the report


class SpeedStats(BaseModel):
    decode_tokens_per_s: float  # medians over the rounds
    prefill_s: float
    batch_tokens_per_s: float
    rounds: list[dict[str, float]]


class SpeedReport(BaseModel):
    """`--measure-speed`: vLLM-CPU, dense and pruned in one process, same prompts, alternating rounds."""

    engine: str
    dtype: str = "float32"
    enforce_eager: bool = True
    max_tokens: int
    batch_prompts: int
    dense: SpeedStats
    pruned: SpeedStats
    decode_speedup: float  # pruned / dense single-stream decode tokens/s
    batch_speedup: float
    load_average_before: list[float]
    load_average_after: list[float]
    seconds: float


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
    structured: StructuredReport | None = None
    heal: HealReport | None = None
    speed: SpeedReport | None = None

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


def structured_variant_label(kind: str, removed: float, heads: float | None, healed: bool) -> str:
    """`depth-27%` (layers removed), `width-50%` (FFN channels removed), `width-50%-heads-33%`,
    `width-heads-33%` (heads only); `-healed` when distilled."""
    parts = [kind] + ([f"{round(removed * 100):d}%"] if removed else [])
    if heads:
        parts.append(f"heads-{round(heads * 100):d}%")
    return "-".join(parts) + ("-healed" if healed else "")


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
