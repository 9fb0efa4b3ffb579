"""The serving marker a 2:4 checkpoint carries in config.json, and which modules it covers.

    "quantization_config": {"quant_method": "sparsefleet_24", "pattern": "2:4", "targets": [regex, ...]}

A module is targeted when one of the regexes matches its full dotted name (`re.fullmatch`, e.g.
`model\\.layers\\.\\d+\\.mlp\\.down_proj` or `.*_proj`); an optional `re:` prefix, as in compressed-tensors
configs, is accepted. No targets means every linear layer. vLLM fuses q/k/v and gate/up into one matrix
(`qkv_proj`, `gate_up_proj`); such a layer is served sparse only when all of its parts are targeted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

QUANT_METHOD = "sparsefleet_24"
Coverage = Literal["all", "none", "partial"]


class Sparse24Marker(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    quant_method: Literal["sparsefleet_24"] = QUANT_METHOD
    pattern: Literal["2:4"]
    targets: tuple[str, ...] = ()

    @field_validator("targets")
    @classmethod
    def _regexes_compile(cls, targets: tuple[str, ...]) -> tuple[str, ...]:
        for target in targets:
            try:
                re.compile(_strip(target))
            except re.error as exc:
                raise ValueError(f"target {target!r} is not a valid regex: {exc}") from exc
        return targets

    def matches(self, module: str) -> bool:
        return not self.targets or any(re.fullmatch(_strip(t), module) for t in self.targets)


def parse_marker(config: Mapping[str, object]) -> Sparse24Marker:
    """Validate a checkpoint's quantization_config; ValueError with one readable line if it is unusable."""
    try:
        return Sparse24Marker.model_validate(dict(config))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'quantization_config'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ValueError(
            f"config.json quantization_config for {QUANT_METHOD} is invalid: {problems}"
        ) from None


def shard_names(prefix: str, packed_modules_mapping: Mapping[str, Sequence[str]]) -> list[str]:
    """Checkpoint module names behind a vLLM layer prefix (`…qkv_proj` → `…q_proj`, `…k_proj`, `…v_proj`)."""
    parent, _, leaf = prefix.rpartition(".")
    parts = packed_modules_mapping.get(leaf)
    if not parts:
        return [prefix]
    return [f"{parent}.{part}" if parent else part for part in parts]


def coverage(marker: Sparse24Marker, shards: Sequence[str]) -> Coverage:
    hits = [marker.matches(name) for name in shards]
    return "all" if all(hits) else "none" if not any(hits) else "partial"


def _strip(target: str) -> str:
    return target[3:] if target.startswith("re:") else target
