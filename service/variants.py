"""Variant metadata read from a checkpoint's `prune_report.json` (docs/contracts.md section 1).

Only the fields the contract marks as relied upon are read; everything else in the report is ignored so the
report may grow. A directory without a report is a dense model of unknown quality.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

log = logging.getLogger(__name__)

REPORT_FILE = "prune_report.json"


class Perplexity(BaseModel):
    model_config = ConfigDict(extra="ignore")

    dense: float | None = None
    pruned: float | None = None


class PruneReport(BaseModel):
    """The subset of prune_report.json (schema_version 1) that the gateway relies on."""

    model_config = ConfigDict(extra="ignore")

    schema_version: int
    variant: str | None = None
    method: str = "none"
    pattern: str | None = None
    sparsity: float = 0.0
    quantization: str | None = None
    perplexity: Perplexity | None = None


class VariantMetadata(BaseModel):
    """What the gateway exposes about the weights a replica serves (in /replicas and the info metric)."""

    model_config = ConfigDict(frozen=True)

    variant: str
    method: str = "none"
    pattern: str = "dense"
    sparsity: float = 0.0
    quantization: str | None = None
    perplexity: float | None = None
    dense_perplexity: float | None = None
    report: str | None = None  # path of the report it came from; None = no report (dense, unknown quality)

    def metric_labels(self) -> dict[str, str]:
        """Label values of `sparsefleet_variant_info`: unknown numbers 'unknown', no quantization 'none'."""
        return {
            "method": self.method,
            "pattern": self.pattern,
            "sparsity": f"{self.sparsity:g}",
            "quantization": self.quantization or "none",
            "perplexity": _fmt(self.perplexity),
            "dense_perplexity": _fmt(self.dense_perplexity),
        }


def _fmt(value: float | None) -> str:
    return "unknown" if value is None else f"{value:g}"


def read_variant_metadata(model_dir: Path | None, variant_override: str | None) -> VariantMetadata:
    """Metadata of the checkpoint in `model_dir`; no (readable) report means dense, unknown quality."""
    report_path = model_dir / REPORT_FILE if model_dir is not None else None
    if report_path is None or not report_path.is_file():
        return VariantMetadata(variant=variant_override or "dense")
    try:
        report = PruneReport.model_validate(json.loads(report_path.read_text()))
    except (OSError, ValueError, ValidationError) as exc:
        log.warning(
            "ignoring unreadable %s (%s); treating the replica as dense", report_path, type(exc).__name__
        )
        return VariantMetadata(variant=variant_override or "dense")
    ppl = report.perplexity
    return VariantMetadata(
        variant=variant_override or report.variant or _default_label(report),
        method=report.method,
        pattern=report.pattern or "dense",
        sparsity=report.sparsity,
        quantization=report.quantization,
        perplexity=ppl.pruned if ppl else None,
        dense_perplexity=ppl.dense if ppl else None,
        report=str(report_path),
    )


def _default_label(report: PruneReport) -> str:
    if report.method == "none" and not report.quantization:
        return "dense"
    label = f"sparse-{report.pattern}" if report.pattern else "dense"
    return f"{label}-{report.quantization}" if report.quantization else label
