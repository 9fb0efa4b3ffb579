"""Frozen, validated configuration of one job. The CLI builds these; everything below it trusts them.

Validation errors name the CLI option (`--calibration-seqlen: ...`) so the CLI can print them as one line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from prune_jobs.masks import NMPattern, SparsityTarget, parse_pattern
from prune_jobs.methods import METHODS, PruneMethod, get_method
from prune_jobs.quant_api import QuantScheme, QuantSpec
from prune_jobs.structured.spec import STRUCTURED_METHODS, SpeedConfig, StructuredSpec

SELF_CALIBRATION = "self"
DATASET_PREFIX = "dataset:"
DEFAULT_SPARSITY = 0.5
WithinLayer = Literal["auto", "sequential", "parallel"]
Schedule = Literal["sequential", "parallel"]


class CalibrationConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    source: str  # a .txt/.jsonl file, "self" or "dataset:NAME"
    samples: int = 128
    seqlen: int = 512
    seed: int = 0

    @field_validator("source")
    @classmethod
    def _source_exists(cls, value: str) -> str:
        if value == SELF_CALIBRATION or value.startswith(DATASET_PREFIX):
            return value
        path = Path(value).expanduser()
        if not path.is_file():
            raise ValueError(
                f"calibration file {value!r} not found (give a .txt/.jsonl file, self or dataset:NAME)"
            )
        return str(path)

    @field_validator("samples")
    @classmethod
    def _positive_samples(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be at least 1, got {value}")
        return value

    @field_validator("seqlen")
    @classmethod
    def _sane_seqlen(cls, value: int) -> int:
        if value < 8:
            raise ValueError(f"must be at least 8 tokens, got {value}")
        return value


class EvalConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: Path
    seqlen: int = 1024
    windows: int = 40

    @field_validator("text")
    @classmethod
    def _text_exists(cls, value: Path) -> Path:
        if not value.expanduser().is_file():
            raise ValueError(f"evaluation text {str(value)!r} not found")
        return value.expanduser()

    @field_validator("seqlen", "windows")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 2:
            raise ValueError(f"must be at least 2, got {value}")
        return value


class PruneConfig(BaseModel):
    """What to prune and how — shared by `run` and `sweep`."""

    model_config = ConfigDict(frozen=True)

    model: str
    method: str
    pattern: str = "unstructured"
    sparsity: float | None = None
    quant: QuantScheme | None = None
    quant_group_size: int | None = None
    calibration: CalibrationConfig | None = None
    include: str | None = None
    exclude: str | None = None
    within_layer: WithinLayer = "auto"
    batch_tokens: int = 4096  # calibration tokens pushed through a block per forward call
    structured: StructuredSpec | None = None  # --method depth|width: what to remove

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value in STRUCTURED_METHODS:
            return value
        try:
            get_method(value)
        except ValueError:
            known = ", ".join([*METHODS, *STRUCTURED_METHODS])
            raise ValueError(f"unknown method {value!r}; choose one of: {known}") from None
        return value

    @field_validator("pattern")
    @classmethod
    def _valid_pattern(cls, value: str) -> str:
        parsed = parse_pattern(value)
        return "unstructured" if parsed is None else str(parsed)

    @field_validator("include", "exclude")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return value

    @field_validator("quant_group_size")
    @classmethod
    def _positive_group(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"must be a positive number of input columns, got {value}")
        return value

    @field_validator("batch_tokens")
    @classmethod
    def _positive_batch(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be positive, got {value}")
        return value

    @model_validator(mode="after")
    def _structured_fits(self) -> PruneConfig:
        """depth/width remove whole parts; the options of the per-weight methods do not apply to them."""
        if self.method not in STRUCTURED_METHODS:
            if self.structured is not None:
                raise ValueError(
                    "method: --remove-layers/--layers/--width/--heads/--heal belong to "
                    "--method depth or width"
                )
            return self
        if self.structured is None or self.structured.kind != self.method:
            raise ValueError(f"structured: --method {self.method} needs its target options")
        for name, given in (
            ("pattern", self.pattern != "unstructured"),
            ("sparsity", self.sparsity is not None),
            ("quant", self.quant is not None),
            ("include", self.include is not None),
            ("exclude", self.exclude is not None),
        ):
            if given:
                raise ValueError(
                    f"{name}: applies to magnitude/wanda/sparsegpt; --method {self.method} removes "
                    "whole layers, channels or heads (see docs/structured.md)"
                )
        return self

    @model_validator(mode="after")
    def _consistent(self) -> PruneConfig:
        nm = self.nm_pattern
        if nm is not None and self.sparsity is not None and abs(self.sparsity - nm.sparsity) > 1e-9:
            raise ValueError(
                f"sparsity: --sparsity {self.sparsity} conflicts with --pattern {nm} "
                f"(which keeps {nm.n} of {nm.m}, i.e. sparsity {nm.sparsity:g})"
            )
        if nm is None and self.sparsity is not None and not 0.0 < self.sparsity < 1.0:
            raise ValueError(f"sparsity: must be in (0, 1), got {self.sparsity}")
        if self.quant_group_size is not None and self.quant is None:
            raise ValueError("quant_group_size: only meaningful with --quant")
        if self.calibration is None and self.needs_calibration:
            why = "--quant" if self.quant else f"--method {self.method}"
            raise ValueError(
                f"calibration: {why} needs calibration data (a .txt/.jsonl file, self or dataset:NAME)"
            )
        return self

    @property
    def prune_method(self) -> PruneMethod:
        return METHODS[self.method]

    @property
    def nm_pattern(self) -> NMPattern | None:
        return parse_pattern(self.pattern)

    @property
    def target(self) -> SparsityTarget:
        return SparsityTarget.of(
            self.nm_pattern, self.sparsity if self.sparsity is not None else DEFAULT_SPARSITY
        )

    @property
    def needs_calibration(self) -> bool:
        if self.structured is not None:
            return self.structured.needs_calibration
        return self.prune_method.needs_calibration or self.quant is not None

    @property
    def schedule(self) -> Schedule:
        """The within-block schedule `auto` stands for, or the one asked for.

        Measured on the shared protocol (docs/benchmarks/pruning.md): unstructured SparseGPT came out better
        with `parallel` in every measurement (0.3-0.5 perplexity at 50% on SmolLM2), N:M SparseGPT did not
        (67.24 vs 67.21 at 2:4), Wanda came out worse with it (51.44 vs 50.98 at 50%), and `sequential` is
        ~1.4x faster. So auto buys the quality where it was measured and the speed everywhere else.
        """
        if self.within_layer != "auto":
            return self.within_layer
        if self.structured is None and self.prune_method.needs_hessian and self.nm_pattern is None:
            return "parallel"
        return "sequential"

    @property
    def needs_full_hessian(self) -> bool:
        return self.prune_method.needs_hessian or self.quant is not None

    def quant_spec(self, group_size: int | None) -> QuantSpec | None:
        return None if self.quant is None else QuantSpec(scheme=self.quant, group_size=group_size)


class RunConfig(BaseModel):
    """One `prune-jobs run`."""

    model_config = ConfigDict(frozen=True)

    prune: PruneConfig
    output: Path
    evaluation: EvalConfig | None = None
    overwrite: bool = False
    serve_marker: bool = True
    speed: SpeedConfig | None = None  # --measure-speed (structured methods)

    @field_validator("output")
    @classmethod
    def _output_usable(cls, value: Path) -> Path:
        value = value.expanduser()
        if value.exists() and not value.is_dir():
            raise ValueError(f"{value} exists and is not a directory")
        return value

    @model_validator(mode="after")
    def _no_clobber(self) -> RunConfig:
        if self.output.is_dir() and any(self.output.iterdir()) and not self.overwrite:
            raise ValueError(f"output: {self.output} exists and is not empty (use --overwrite to replace it)")
        if self.speed is not None and self.prune.structured is None:
            raise ValueError(
                "measure_speed: --measure-speed compares smaller dense models; "
                "it needs --method depth or width"
            )
        return self


class SweepConfig(BaseModel):
    """One `prune-jobs sweep`: the same job at several unstructured sparsities."""

    model_config = ConfigDict(frozen=True)

    prune: PruneConfig
    sparsities: tuple[float, ...]
    evaluation: EvalConfig
    output: Path
    tolerance: float = 0.01
    overwrite: bool = False

    @field_validator("sparsities")
    @classmethod
    def _valid_sparsities(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        if not values:
            raise ValueError("give at least one sparsity")
        for value in values:
            if not 0.0 < value < 1.0:
                raise ValueError(f"every sparsity must be in (0, 1), got {value}")
        return tuple(sorted(set(values)))

    @field_validator("tolerance")
    @classmethod
    def _non_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError(f"must be >= 0, got {value}")
        return value

    @model_validator(mode="after")
    def _unstructured_only(self) -> SweepConfig:
        if self.prune.nm_pattern is not None:
            raise ValueError(f"pattern: a sweep varies unstructured sparsity; {self.prune.pattern} fixes it")
        if self.output.exists() and not self.output.is_dir():
            raise ValueError(f"output: {self.output} exists and is not a directory")
        if self.output.is_dir() and any(self.output.iterdir()) and not self.overwrite:
            raise ValueError(f"output: {self.output} exists and is not empty (use --overwrite to replace it)")
        return self


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming the CLI option of every failing field (`--calibration-seqlen: must be ...`)."""
    parts = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        path = tuple(str(p) for p in error["loc"] if isinstance(p, str))
        if path and path[-1] in ("prune", "evaluation", "calibration"):
            path = path[:-1]
        if ": " in message and message.split(": ", 1)[0].isidentifier():
            field, message = message.split(": ", 1)  # model validators prefix the field they are about
            path = (*path, field)
        parts.append(f"{_option_name(path)}: {message}" if path else message)
    return "; ".join(parts)


_OPTION_NAMES = {
    ("calibration", "source"): "--calibration",
    ("calibration", "samples"): "--calibration-samples",
    ("calibration", "seqlen"): "--calibration-seqlen",
    ("calibration", "seed"): "--seed",
    ("evaluation", "text"): "--eval-text",
    ("evaluation", "seqlen"): "--eval-seqlen",
    ("evaluation", "windows"): "--eval-windows",
    ("heal", "steps"): "--heal",
    ("heal", "lr"): "--heal-lr",
    ("heal", "batch"): "--heal-batch",
    ("speed", "rounds"): "--speed-rounds",
    ("speed", "max_tokens"): "--speed-tokens",
}


def _option_name(path: tuple[str, ...]) -> str:
    return _OPTION_NAMES.get(path[-2:], "--" + path[-1].replace("_", "-"))
