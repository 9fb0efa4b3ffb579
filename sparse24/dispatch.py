"""Which kernel serves a linear layer of a given shape, for each bucket of token counts M — and why.

The choice is made from measured times only (see `measure.py`); this module is the pure part: picking
winners, the on-disk cache of tables, and looking a bucket up at run time. It imports nothing but torch-free
stdlib so that it is unit-tested on CPU with injected timings and runs unchanged on a bare GPU image.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

KERNELS = ("dense", "cusparselt", "mma_sp")
# Token-count buckets: a batch of M tokens uses the first bucket >= M (the last one beyond it). Powers of
# two match the CUDA-graph batch sizes vLLM pads decode batches to.
M_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
# Bytes a format keeps per byte of the dense fp16/bf16 weight: 2:4 keeps half the values + 2-bit indices.
FORMAT_BYTES = {"dense": 1.0, "cusparselt": 0.5625, "mma_sp": 0.5625}
DEFAULT_TOLERANCE = 0.98  # a kernel may be chosen when it reaches >= 98% of the fastest kernel's speed
TABLE_SCHEMA = 1


@dataclass(frozen=True)
class Candidate:
    """One measured way to run a bucket: kernel, variant (cuSPARSELt alg_id, mma.sp blocks), time."""

    kernel: str
    time_us: float
    variant: int = 0

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"unknown kernel {self.kernel!r}; known: {', '.join(KERNELS)}")
        if not self.time_us > 0:
            raise ValueError(f"time must be positive, got {self.time_us}")


@dataclass(frozen=True)
class Choice:
    """The kernel serving one bucket and what it costs next to dense cuBLAS measured in the same run."""

    m: int
    kernel: str
    variant: int
    time_us: float
    dense_us: float

    @property
    def speedup(self) -> float:
        return self.dense_us / self.time_us


@dataclass(frozen=True)
class DeviceKey:
    """Everything a measured time depends on besides the shape; a change in any of these re-measures."""

    device: str
    capability: str
    torch: str
    cuda: str
    cusparselt: str
    kernel: str  # hash of the mma.sp kernel source

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DispatchTable:
    n: int
    k: int
    dtype: str
    device: DeviceKey
    choices: tuple[Choice, ...]
    tolerance: float = DEFAULT_TOLERANCE
    schema: int = field(default=TABLE_SCHEMA)

    def choose(self, m: int) -> Choice:
        """The choice for a batch of m tokens: first bucket >= m, else the largest bucket."""
        return self.choices[bucket_index([c.m for c in self.choices], m)]

    def kernels(self) -> set[str]:
        return {c.kernel for c in self.choices}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> DispatchTable:
        raw = json.loads(text)
        if raw.get("schema") != TABLE_SCHEMA:
            raise ValueError(f"dispatch table schema {raw.get('schema')!r}, expected {TABLE_SCHEMA}")
        return cls(
            n=int(raw["n"]),
            k=int(raw["k"]),
            dtype=str(raw["dtype"]),
            device=DeviceKey(**raw["device"]),
            choices=tuple(Choice(**c) for c in raw["choices"]),
            tolerance=float(raw["tolerance"]),
        )


def bucket_index(bounds: Sequence[int], m: int) -> int:
    if m < 1:
        raise ValueError(f"token count must be >= 1, got {m}")
    for i, bound in enumerate(bounds):
        if m <= bound:
            return i
    return len(bounds) - 1


def select(
    timings: Mapping[int, Sequence[Candidate]], tolerance: float = DEFAULT_TOLERANCE
) -> tuple[Choice, ...]:
    """Pick one kernel per bucket from measured candidates.

    Rule: every bucket gets a kernel at least `tolerance` × as fast as the fastest one measured for it
    (dense included, so no bucket ends up below `tolerance` × dense). Among the sets of kernels that satisfy
    this for all buckets, the one whose weight formats take the least memory wins — a layer served only by
    sparse kernels can drop its dense copy — and ties go to the set with the smallest sum of relative times.
    """
    if not 0 < tolerance <= 1:
        raise ValueError(f"tolerance must be in (0, 1], got {tolerance}")
    if not timings:
        raise ValueError("no timings to choose from")
    for m, candidates in timings.items():
        if not any(c.kernel == "dense" for c in candidates):
            raise ValueError(f"bucket M={m} has no dense measurement to compare with")
    best = {m: min(c.time_us for c in cands) for m, cands in timings.items()}
    kernels = sorted({c.kernel for cands in timings.values() for c in cands}, key=KERNELS.index)

    winner: tuple[tuple[float, float], list[Choice]] | None = None
    for size in range(1, len(kernels) + 1):
        for subset in itertools.combinations(kernels, size):
            picks = _picks_within(timings, best, set(subset), tolerance)
            if picks is None:
                continue
            used = {c.kernel for c in picks}
            score = (sum(FORMAT_BYTES[k] for k in used), sum(c.time_us / best[c.m] for c in picks))
            if winner is None or score < winner[0]:
                winner = (score, picks)
    if winner is None:  # impossible: the subset of all kernels always contains each bucket's fastest
        raise AssertionError("no kernel set covers every bucket")
    return tuple(sorted(winner[1], key=lambda c: c.m))


def _picks_within(
    timings: Mapping[int, Sequence[Candidate]], best: Mapping[int, float], allowed: set[str], tolerance: float
) -> list[Choice] | None:
    picks = []
    for m, candidates in timings.items():
        usable = [c for c in candidates if c.kernel in allowed]
        if not usable:
            return None
        pick = min(usable, key=lambda c: c.time_us)
        if pick.time_us * tolerance > best[m]:
            return None
        dense_us = min(c.time_us for c in candidates if c.kernel == "dense")
        picks.append(
            Choice(m=m, kernel=pick.kernel, variant=pick.variant, time_us=pick.time_us, dense_us=dense_us)
        )
    return picks


def table_path(root: Path, device: DeviceKey, n: int, k: int, dtype: str) -> Path:
    return root / "sparse24" / "dispatch" / device.digest() / f"{dtype}-{n}x{k}.json"


def load_table(root: Path, device: DeviceKey, n: int, k: int, dtype: str) -> DispatchTable | None:
    """A cached table for exactly this device/versions/shape, or None (missing, stale or unreadable)."""
    path = table_path(root, device, n, k, dtype)
    try:
        table = DispatchTable.from_json(path.read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if table.device != device or (table.n, table.k, table.dtype) != (n, k, dtype):
        return None
    return table


def save_table(root: Path, table: DispatchTable) -> Path:
    """Write atomically, so that tensor-parallel ranks measuring the same shape never read half a file."""
    path = table_path(root, table.device, table.n, table.k, table.dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        fh.write(table.to_json())
    os.replace(tmp, path)
    return path
