"""Measure every backend on one layer shape for every token bucket, and turn that into a dispatch table.

Used at model load (vllm_plugin), by `prune-jobs speedcheck` and by the benchmark scripts, so all three
report the same numbers. GPU only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sparse24.backends import BackendSet
from sparse24.dispatch import (
    DEFAULT_TOLERANCE,
    M_BUCKETS,
    Candidate,
    DeviceKey,
    DispatchTable,
    load_table,
    save_table,
    select,
)
from sparse24.kernel import kernel_version
from sparse24.pattern import prune_24
from sparse24.timing import graph_time_us, rotation_copies

log = logging.getLogger(__name__)

# A candidate must match dense cuBLAS this closely (max |Δ| / max |dense|) or it is never chosen.
MAX_RELATIVE_ERROR = {torch.float16: 5e-3, torch.bfloat16: 3e-2, torch.float32: 1e-4}


@dataclass
class ShapeMeasurement:
    """Raw measurements of one shape: candidates per bucket, and why a backend was left out."""

    n: int
    k: int
    dtype: torch.dtype
    timings: dict[int, list[Candidate]] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)


def device_key(device: torch.device | None = None) -> DeviceKey:
    props = torch.cuda.get_device_properties(device)
    try:
        cusparselt = str(torch.backends.cusparselt.version())
    except (AttributeError, RuntimeError):
        cusparselt = "none"
    return DeviceKey(
        device=props.name,
        capability=f"{props.major}.{props.minor}",
        torch=torch.__version__,
        cuda=str(torch.version.cuda),
        cusparselt=cusparselt,
        kernel=kernel_version(),
    )


def measure_shape(
    weight: torch.Tensor,
    backends: BackendSet,
    buckets: Sequence[int] = M_BUCKETS,
    repeats: int = 15,
    progress: Callable[[str], None] | None = None,
) -> ShapeMeasurement:
    """Time every backend and variant on `weight` (a 2:4 CUDA tensor [N, K]) for M in `buckets`."""
    n, k = weight.shape
    result = ShapeMeasurement(n=n, k=k, dtype=weight.dtype)
    # Sized on the smallest format (2:4 keeps 56.25% of the bytes) so that every format streams past L2.
    copies = rotation_copies(int(weight.numel() * weight.element_size() * 0.5625), weight.device)
    gen = torch.Generator(device=weight.device).manual_seed(0)
    states = {}
    for backend in backends.backends:
        reason = backend.supports(n, k, weight.dtype)
        if reason is None:
            try:
                first = backend.prepare(weight)
                states[backend.name] = [first] + [backend.clone(first) for _ in range(copies - 1)]
            except (RuntimeError, ValueError) as exc:  # e.g. NVRTC or cuSPARSELt refusing this shape
                reason = f"{type(exc).__name__}: {exc}"
        if reason is not None:
            result.excluded[backend.name] = reason
    by_name = {b.name: b for b in backends.backends}
    for m in buckets:
        if progress:
            progress(f"{n}x{k} M={m}")
        x = torch.randn(m, k, generator=gen, device=weight.device, dtype=weight.dtype)
        reference = by_name["dense"].run(states["dense"][0], x, 0)
        candidates = []
        for name, copies_of_state in states.items():
            if name in result.excluded:
                continue
            backend = by_name[name]
            try:
                variants = backend.variants(copies_of_state[0], x)
                for variant in variants:
                    error = _relative_error(backend.run(copies_of_state[0], x, variant), reference)
                    if error > MAX_RELATIVE_ERROR.get(weight.dtype, 3e-2):
                        result.excluded[name] = f"wrong result at M={m} (relative error {error:.2e})"
                        break
                    calls = [_bind(backend.run, state, x, variant) for state in copies_of_state]
                    candidates.append(Candidate(name, graph_time_us(calls, repeats=repeats), variant))
            except RuntimeError as exc:
                log.warning("sparse24: %s failed on %dx%d at M=%d: %s", name, n, k, m, exc)
        result.timings[m] = candidates
    # A backend excluded half-way (wrong result) must not keep the buckets it was timed on.
    for m, candidates in result.timings.items():
        result.timings[m] = [c for c in candidates if c.kernel not in result.excluded]
    del states
    torch.cuda.empty_cache()
    return result


def build_table(
    measurement: ShapeMeasurement, device: DeviceKey, tolerance: float = DEFAULT_TOLERANCE
) -> DispatchTable:
    return DispatchTable(
        n=measurement.n,
        k=measurement.k,
        dtype=str(measurement.dtype).removeprefix("torch."),
        device=device,
        choices=select(measurement.timings, tolerance),
        tolerance=tolerance,
    )


def table_for(
    weight: torch.Tensor,
    backends: BackendSet,
    cache_root: Path | None,
    tolerance: float = DEFAULT_TOLERANCE,
    remeasure: bool = False,
) -> DispatchTable:
    """The cached table for this device/versions/shape, measuring (and caching) it when missing."""
    key = device_key(weight.device)
    n, k = weight.shape
    dtype = str(weight.dtype).removeprefix("torch.")
    if cache_root is not None and not remeasure:
        cached = load_table(cache_root, key, n, k, dtype)
        if cached is not None and cached.tolerance == tolerance:
            return cached
    table = build_table(measure_shape(weight, backends), key, tolerance)
    if cache_root is not None:
        save_table(cache_root, table)
    return table


def random_24_weight(
    n: int, k: int, dtype: torch.dtype, device: torch.device | str = "cuda", seed: int = 0
) -> torch.Tensor:
    """A reproducible 2:4 weight for speedcheck and benchmarks, scaled like a trained layer (std ~ 1/sqrt(K))
    so that stacks of them keep activations in range."""
    gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + n * 100_003 + k)
    weight = torch.randn(n, k, generator=gen, device=device, dtype=torch.float32) * (2.0 / k) ** 0.5
    return prune_24(weight).to(dtype)


def _relative_error(out: torch.Tensor, reference: torch.Tensor) -> float:
    scale = reference.abs().max().clamp_min(1e-6)
    return float((out.float() - reference.float()).abs().max() / scale)


def _bind(fn, state, x, variant):
    return lambda: fn(state, x, variant)
