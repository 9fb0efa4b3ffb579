"""Which CPU cores each in-process engine's OpenMP threads are pinned to.

Measured on the 2-core development machine with two tiny engines (docs/service.md, "Threads"): pinning
each engine to its own core gave 1.8x the throughput of vLLM's own 'auto' (which puts every engine's
worker on the same last core) and >6x that of unpinned threads (which oversubscribe the cores).
"""

from __future__ import annotations

import os


def allowed_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def assign_cores(requests: list[str], cpus: list[int]) -> list[str | None]:
    """Resolve each engine's `cpu_cores` setting to a VLLM_CPU_OMP_THREADS_BIND value (None = vLLM's own).

    'auto' engines share the allowed cores out evenly in contiguous blocks; with a single 'auto' engine vLLM's
    own choice stands (it reserves a core for its scheduler). More engines than cores wrap around.
    """
    auto = [i for i, value in enumerate(requests) if value == "auto"]
    resolved: list[str | None] = [None if value == "auto" else value for value in requests]
    if len(auto) <= 1 or not cpus:
        return resolved
    per_engine = max(len(cpus) // len(auto), 1)
    for slot, index in enumerate(auto):
        start = (slot * per_engine) % len(cpus)
        block = cpus[start : start + per_engine]
        resolved[index] = _as_range(block)
    return resolved


def _as_range(block: list[int]) -> str:
    if len(block) > 1 and block == list(range(block[0], block[-1] + 1)):
        return f"{block[0]}-{block[-1]}"
    return ",".join(str(cpu) for cpu in block)
