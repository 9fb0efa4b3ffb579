"""`prune-jobs speedcheck --model DIR`: what 2:4 buys for this model's linear layers on this GPU.

Reads the model's config.json, derives the linear shapes vLLM serves (q/k/v and gate/up fused), measures
every kernel for every token bucket exactly as the plugin does at load (`measure.py`), and prints which
kernel each bucket would use and the speedup over dense cuBLAS — per shape, and for all linear layers of
the model together (time-weighted by how many of each shape the model has).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

EXIT_NO_GPU = 3  # documented in docs/gpu.md; 2 stays "bad input", as everywhere in prune-jobs


class SpeedcheckInputError(ValueError):
    """The model directory cannot be read as a decoder config; the message says what is missing."""


class NoGpuError(RuntimeError):
    """No usable CUDA GPU here."""


@dataclass(frozen=True)
class LinearShape:
    name: str  # as vLLM names the (fused) layer
    n: int  # out_features
    k: int  # in_features
    count: int  # how many such layers the model has


def model_linear_shapes(model_dir: Path) -> list[LinearShape]:
    """Per-decoder-layer linear shapes of a Llama-style config (the family prune_jobs writes)."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise SpeedcheckInputError(f"{model_dir}: no config.json (expected a Hugging Face model directory)")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SpeedcheckInputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    cfg = cfg.get("text_config", cfg)  # multimodal wrappers keep the decoder config inside
    required = ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers")
    missing = [key for key in required if not isinstance(cfg.get(key), int)]
    if missing:
        raise SpeedcheckInputError(
            f"{path}: speedcheck understands Llama-style decoder configs; missing {', '.join(missing)}"
        )
    hidden, inter, heads = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or hidden // heads
    layers = cfg["num_hidden_layers"]
    return [
        LinearShape("qkv_proj", (heads + 2 * kv_heads) * head_dim, hidden, layers),
        LinearShape("o_proj", hidden, heads * head_dim, layers),
        LinearShape("gate_up_proj", 2 * inter, hidden, layers),
        LinearShape("down_proj", hidden, inter, layers),
    ]


def run_speedcheck(
    model_dir: Path,
    dtype_name: str = "bfloat16",
    buckets: Sequence[int] | None = None,
    kernels: Sequence[str] = ("dense", "cusparselt", "mma_sp"),
    out=sys.stdout,
) -> list[dict]:
    """Measure and print; returns one row per (shape, bucket). Raises NoGpuError / SpeedcheckInputError."""
    shapes = model_linear_shapes(model_dir)
    import torch

    dtypes = {"bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype_name not in dtypes:
        raise SpeedcheckInputError(f"--dtype {dtype_name!r}: choose one of {', '.join(dtypes)}")
    if not torch.cuda.is_available():
        raise NoGpuError(
            f"no CUDA GPU visible to torch {torch.__version__}; speedcheck measures kernels on one"
        )
    major, minor = torch.cuda.get_device_capability()
    if major < 8:
        raise NoGpuError(f"GPU is sm_{major}{minor}; 2:4 sparse tensor cores need sm_80 or newer")

    from sparse24.backends import BackendSet
    from sparse24.dispatch import M_BUCKETS
    from sparse24.measure import build_table, device_key, measure_shape, random_24_weight
    from sparse24.timing import device_summary

    key = device_key()
    summary = device_summary()
    print(" | ".join(f"{k} {v}" for k, v in summary.items()), file=out)
    buckets = tuple(buckets or M_BUCKETS)
    rows: list[dict] = []
    tables = {}
    for shape in shapes:
        print(f"measuring {shape.name} {shape.n}x{shape.k} ...", file=out, flush=True)
        weight = random_24_weight(shape.n, shape.k, dtypes[dtype_name])
        measurement = measure_shape(weight, BackendSet.named(tuple(kernels)), buckets)
        for name, reason in measurement.excluded.items():
            print(f"  {name} not used for {shape.name}: {reason}", file=out)
        tables[shape.name] = build_table(measurement, key)
        del weight
    print(_format(shapes, tables, buckets, rows), file=out)
    return rows


def _format(shapes: list[LinearShape], tables: dict, buckets: Sequence[int], rows: list[dict]) -> str:
    head = ["M"] + [f"{s.name} {s.n}x{s.k}" for s in shapes] + ["all linears"]
    lines = []
    for m in buckets:
        cells, dense_total, chosen_total = [str(m)], 0.0, 0.0
        for shape in shapes:
            choice = tables[shape.name].choose(m)
            cells.append(f"{choice.kernel}{_variant(choice)} {choice.speedup:.2f}x")
            dense_total += shape.count * choice.dense_us
            chosen_total += shape.count * choice.time_us
            rows.append(
                {
                    "shape": shape.name,
                    "n": shape.n,
                    "k": shape.k,
                    "m": m,
                    "kernel": choice.kernel,
                    "variant": choice.variant,
                    "time_us": choice.time_us,
                    "dense_us": choice.dense_us,
                }
            )
        cells.append(f"{dense_total / chosen_total:.2f}x")
        lines.append(cells)
    widths = [max(len(r[i]) for r in [head, *lines]) for i in range(len(head))]
    render = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [head, *lines]]
    render.insert(1, "-+-".join("-" * w for w in widths))
    return (
        "\n".join(render) + "\n(speedup = dense cuBLAS time / chosen kernel time, same process, CUDA graphs)"
    )


def _variant(choice) -> str:
    if choice.kernel == "mma_sp":
        return f"/{choice.variant}"
    if choice.kernel == "cusparselt":
        return f"#{choice.variant}"
    return ""
