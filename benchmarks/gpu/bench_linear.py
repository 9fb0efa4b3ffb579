"""Per-linear benchmark: dense cuBLAS vs cuSPARSELt vs the mma.sp kernel vs the dispatch choice.

Llama-3-8B and -70B linear shapes, M = 1..4096 tokens, bf16, CUDA graphs, every weight rotated among
enough copies to stream past L2, median of repeats, all kernels in the same process (sparse24/measure.py,
the code the vLLM plugin runs at load). Prints one table per model and the target verdicts.

    python3 benchmarks/gpu/bench_linear.py [--models 8B 70B] [--m 1 2 4 ...] [--out results.json]

Targets (issue 7, H100, bf16, vs cuBLAS dense in the same run): M <= 16 >= 1.5x; M >= 2048 >= 1.5x;
dispatch never below 0.98x at any M.
"""

from __future__ import annotations

import argparse

from common import LLAMA3_SHAPES, header, require_gpu, table, write_json

DEFAULT_M = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["8B", "70B"], choices=sorted(LLAMA3_SHAPES))
    parser.add_argument("--m", nargs="+", type=int, default=list(DEFAULT_M), help="token counts")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", help="also write the raw numbers as JSON")
    args = parser.parse_args()
    require_gpu("bench_linear.py")

    import torch

    from sparse24.backends import BackendSet
    from sparse24.dispatch import select
    from sparse24.measure import measure_shape, random_24_weight

    dtype = getattr(torch, args.dtype)
    print(header())
    results, verdicts = [], []
    for model in args.models:
        rows = []
        for name, (n, k) in LLAMA3_SHAPES[model].items():
            weight = random_24_weight(n, k, dtype)
            meas = measure_shape(
                weight, BackendSet.named(("dense", "cusparselt", "mma_sp")), args.m, args.repeats
            )
            del weight
            for kernel, reason in meas.excluded.items():
                print(f"note: {kernel} left out for {model} {name}: {reason}")
            choices = {c.m: c for c in select(meas.timings)}
            for m in args.m:
                best = {}
                for c in meas.timings[m]:
                    if c.kernel not in best or c.time_us < best[c.kernel].time_us:
                        best[c.kernel] = c
                dense = best["dense"].time_us
                choice = choices[m]

                def cell(kernel: str, best=best, dense=dense) -> str:
                    c = best.get(kernel)
                    return "-" if c is None else f"{c.time_us:.1f} ({dense / c.time_us:.2f}x)"

                rows.append(
                    [
                        name,
                        f"{n}x{k}",
                        str(m),
                        f"{dense:.1f}",
                        cell("cusparselt"),
                        cell("mma_sp"),
                        f"{choice.kernel} {choice.speedup:.2f}x",
                    ]
                )
                results.append(
                    {
                        "model": model,
                        "layer": name,
                        "n": n,
                        "k": k,
                        "m": m,
                        "us": {kk: c.time_us for kk, c in best.items()},
                        "variants": {kk: c.variant for kk, c in best.items()},
                        "dispatch": choice.kernel,
                        "dispatch_speedup": choice.speedup,
                    }
                )
                verdicts.append((model, name, m, choice.speedup))
        print(f"\nLlama-3-{model}, {args.dtype}, µs per call (speedup vs dense)")
        print(table(["layer", "N x K", "M", "dense µs", "cuSPARSELt", "mma.sp", "dispatch"], rows))
    print()
    print(_verdict("M <= 16: dispatch >= 1.5x", [v for v in verdicts if v[2] <= 16], 1.5))
    print(_verdict("M >= 2048: dispatch >= 1.5x", [v for v in verdicts if v[2] >= 2048], 1.5))
    print(_verdict("any M: dispatch >= 0.98x", verdicts, 0.98))
    write_json(args.out, {"header": header(), "results": results})


def _verdict(label: str, rows: list[tuple[str, str, int, float]], target: float) -> str:
    if not rows:
        return f"{label}: not measured (no such M requested)"
    worst = min(rows, key=lambda r: r[3])
    status = "PASS" if worst[3] >= target else "FAIL"
    return f"{label}: {status} (worst {worst[3]:.2f}x at Llama-3-{worst[0]} {worst[1]} M={worst[2]})"


if __name__ == "__main__":
    main()
