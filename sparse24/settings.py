"""Environment knobs of the GPU path (prefix SPARSEFLEET_), read where they are used, validated once.

Kept free of pydantic-settings on purpose: the benchmark scripts run on bare GPU images with torch only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sparse24.dispatch import DEFAULT_TOLERANCE, KERNELS


@dataclass(frozen=True)
class Sparse24Settings:
    cache_root: Path  # $SPARSEFLEET_CACHE (default ~/.cache/sparsefleet); tables go under sparse24/dispatch
    kernels: tuple[str, ...] = (
        KERNELS  # $SPARSEFLEET_SP24_KERNELS, comma-separated; "dense" = no acceleration
    )
    tolerance: float = DEFAULT_TOLERANCE  # $SPARSEFLEET_SP24_TOLERANCE
    remeasure: bool = False  # $SPARSEFLEET_SP24_REMEASURE=1 ignores cached tables

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Sparse24Settings:
        env = os.environ if env is None else env
        root = Path(env.get("SPARSEFLEET_CACHE") or "~/.cache/sparsefleet").expanduser()
        kernels = tuple(
            k.strip() for k in env.get("SPARSEFLEET_SP24_KERNELS", ",".join(KERNELS)).split(",") if k.strip()
        )
        unknown = [k for k in kernels if k not in KERNELS]
        if unknown or not kernels:
            raise ValueError(
                f"SPARSEFLEET_SP24_KERNELS={env.get('SPARSEFLEET_SP24_KERNELS')!r}: "
                f"expected a comma-separated subset of {', '.join(KERNELS)}"
            )
        raw_tol = env.get("SPARSEFLEET_SP24_TOLERANCE", str(DEFAULT_TOLERANCE))
        try:
            tolerance = float(raw_tol)
        except ValueError:
            tolerance = -1.0
        if not 0 < tolerance <= 1:
            raise ValueError(f"SPARSEFLEET_SP24_TOLERANCE={raw_tol!r}: expected a number in (0, 1]")
        remeasure = env.get("SPARSEFLEET_SP24_REMEASURE", "0").strip().lower() in ("1", "true", "yes")
        return cls(cache_root=root, kernels=kernels, tolerance=tolerance, remeasure=remeasure)

    @property
    def accelerate(self) -> bool:
        return self.kernels != ("dense",)
