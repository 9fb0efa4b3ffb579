"""Honest GPU timings: CUDA graphs (no launch overhead), weights rotated past L2, median of repeats.

Decode reads every weight once per step, so a benchmark that keeps one weight hot in the 50 MB L2 of an
H100 flatters the memory-bound kernels. Each timed graph cycles through enough copies of the weight that
none of them is still cached when it comes round again.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

MIN_COPIES = 3
MAX_COPIES = 64
MIN_CALLS_PER_GRAPH = 12
T = TypeVar("T")


def rotation_copies(weight_bytes: int, device: torch.device | None = None) -> int:
    """Copies of a weight needed so that cycling through them streams at least 2× the L2 size."""
    l2 = torch.cuda.get_device_properties(device).L2_cache_size
    return max(MIN_COPIES, min(MAX_COPIES, math.ceil(2 * l2 / max(weight_bytes, 1)) + 1))


def capture(
    fn: Callable[[], T], warmup_fn: Callable[[], object] | None = None
) -> tuple[torch.cuda.CUDAGraph, T]:
    """A CUDA graph of `fn` and the (static) output it captured; `warmup_fn` (default `fn`) runs once before
    capture on a side stream so that lazily-initialised state (handles, workspaces) exists."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        (warmup_fn or fn)()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


def median_replay_ms(graph: torch.cuda.CUDAGraph, repeats: int = 15, warmup: int = 3) -> float:
    """Median wall time of one replay, timed with CUDA events."""
    for _ in range(warmup):
        graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples = []
    for _ in range(repeats):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end))
    return statistics.median(samples)


def graph_time_us(calls: Sequence[Callable[[], object]], repeats: int = 15, warmup: int = 3) -> float:
    """Median time of one call, from replays of a CUDA graph that runs `calls` back to back.

    Each element of `calls` should touch a different weight copy; the list is repeated until it holds at
    least MIN_CALLS_PER_GRAPH calls so that a replay is long enough to time with events.
    """
    if not calls:
        raise ValueError("nothing to time")
    sequence = list(calls) * max(1, math.ceil(MIN_CALLS_PER_GRAPH / len(calls)))
    graph, _ = capture(lambda: [call() for call in sequence], warmup_fn=lambda: [call() for call in calls])
    per_replay_ms = median_replay_ms(graph, repeats, warmup)
    del graph
    return per_replay_ms * 1000.0 / len(sequence)


def device_summary(device: torch.device | None = None) -> dict[str, str]:
    """The facts a GPU table must print next to its numbers."""
    props = torch.cuda.get_device_properties(device)
    try:
        cusparselt = str(torch.backends.cusparselt.version())
    except (AttributeError, RuntimeError):
        cusparselt = "unavailable"
    driver = "unknown"
    try:
        import subprocess

        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        driver = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else driver
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "device": props.name,
        "capability": f"{props.major}.{props.minor}",
        "sms": str(props.multi_processor_count),
        "l2_mb": f"{props.L2_cache_size / 2**20:.0f}",
        "driver": driver,
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda),
        "cusparselt": cusparselt,
    }
