"""Decoder-stack benchmark: one whole step of a 32-layer Llama-3-8B-shaped model, dense vs 2:4.

Every layer has its own random 2:4 weights (so nothing stays in L2 between layers), GQA attention
(32 query / 8 KV heads, head 128) over a 512-token cache for decode and causal self-attention for prefill,
RMSNorm and SiLU-gated MLP. The whole step is captured in one CUDA graph; the median of repeated replays is
reported. Modes, all in the same process on the same weights:

* dense     — F.linear everywhere (cuBLAS), the baseline;
* dispatch  — `torch.ops.sparsefleet.sp24_linear` with tables measured for these shapes (what the vLLM
              plugin serves);
* cusparselt — every linear on cuSPARSELt (the GPU_NOTES.md baseline: 0.28-0.49x for decode).

    python3 benchmarks/gpu/bench_decoder_step.py [--decode 1 8 16 32] [--prefill 512 2048] [--out r.json]

Targets (issue 7): decode batch 1-32 >= 1.3x; prefill 2048 tokens >= 1.4x.
"""

from __future__ import annotations

import argparse

from common import LLAMA3_SHAPES, header, require_gpu, table, write_json

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, LAYERS, CACHE = 4096, 32, 8, 128, 32, 512


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decode", nargs="*", type=int, default=[1, 8, 16, 32], help="decode batch sizes")
    parser.add_argument("--prefill", nargs="*", type=int, default=[512, 2048], help="prefill token counts")
    parser.add_argument("--layers", type=int, default=LAYERS)
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["dense", "dispatch", "cusparselt"],
        choices=["dense", "dispatch", "cusparselt"],
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", help="also write the raw numbers as JSON")
    args = parser.parse_args()
    require_gpu("bench_decoder_step.py")

    import torch

    from sparse24.backends import BackendSet, CusparseltBackend, MmaSpBackend
    from sparse24.dispatch import KERNELS, select
    from sparse24.measure import measure_shape, random_24_weight
    from sparse24.ops import KERNEL_IDS

    dtype = torch.bfloat16
    shapes = LLAMA3_SHAPES["8B"]
    token_counts = sorted(set(args.decode) | set(args.prefill))
    print(header())

    # One measurement per shape gives the tables every layer of that shape uses.
    tables: dict[str, dict[str, tuple[list[int], list[int], list[int]]]] = {m: {} for m in args.modes}
    for name, (n, k) in shapes.items():
        meas = measure_shape(random_24_weight(n, k, dtype), BackendSet.named(KERNELS), token_counts, 10)
        for mode in args.modes:
            if mode == "dense":
                continue
            if mode == "dispatch":
                picks = [(c.m, c.kernel, c.variant) for c in select(meas.timings)]
            else:
                picks = []
                for m in token_counts:
                    cands = [c for c in meas.timings[m] if c.kernel == "cusparselt"] or [
                        c for c in meas.timings[m] if c.kernel == "dense"
                    ]
                    best = min(cands, key=lambda c: c.time_us)
                    picks.append((m, best.kernel, best.variant))
            tables[mode][name] = (
                [p[0] for p in picks],
                [KERNEL_IDS[p[1]] for p in picks],
                [p[2] for p in picks],
            )
            print(f"{mode} {name}: " + ", ".join(f"M={m}:{kern}" for m, kern, _ in picks))

    needed = {KERNELS[i] for mode in tables.values() for args_ in mode.values() for i in args_[1]}
    layers = []
    for index in range(args.layers):
        layer = {}
        for name, (n, k) in shapes.items():
            w = random_24_weight(n, k, dtype, seed=index)  # every layer its own weights: nothing stays in L2
            packed = MmaSpBackend().prepare(w) if "mma_sp" in needed else None
            layer[name] = {
                "dense": w,
                "cslt": CusparseltBackend().prepare(w) if "cusparselt" in needed else w.new_empty(0),
                "vals": packed.values if packed else w.new_empty(0),
                "meta": packed.meta if packed else w.new_empty(0),
                "n": n,
                "k": k,
            }
        layers.append(layer)
    norm_w = torch.ones(HIDDEN, device="cuda", dtype=dtype)

    def linear(mode: str, layer: dict, name: str, x: torch.Tensor) -> torch.Tensor:
        p = layer[name]
        if mode == "dense":
            return torch.nn.functional.linear(x, p["dense"])
        bucket_m, kernel_ids, variants = tables[mode][name]
        return torch.ops.sparsefleet.sp24_linear(
            x, p["dense"], p["cslt"], p["vals"], p["meta"], p["n"], p["k"], bucket_m, kernel_ids, variants
        )

    def step(mode: str, h: torch.Tensor, caches, decode: bool) -> torch.Tensor:
        t = h.shape[0]
        for layer, (kc, vc) in zip(layers, caches, strict=True):
            x = torch.nn.functional.rms_norm(h, (HIDDEN,), norm_w)
            qkv = linear(mode, layer, "qkv", x)
            q, k, v = qkv.split([HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM], dim=-1)
            if decode:  # t sequences of one new token each, attending over their 512-token caches
                q = q.view(t, HEADS, 1, HEAD_DIM)
                attn = torch.nn.functional.scaled_dot_product_attention(q, kc, vc, enable_gqa=True)
            else:  # one sequence of t tokens
                q = q.view(1, t, HEADS, HEAD_DIM).transpose(1, 2)
                k = k.view(1, t, KV_HEADS, HEAD_DIM).transpose(1, 2)
                v = v.view(1, t, KV_HEADS, HEAD_DIM).transpose(1, 2)
                attn = torch.nn.functional.scaled_dot_product_attention(
                    q, k, v, is_causal=True, enable_gqa=True
                )
            attn = attn.transpose(1, 2).reshape(t, HEADS * HEAD_DIM) if not decode else attn.reshape(t, -1)
            h = h + linear(mode, layer, "o", attn)
            x = torch.nn.functional.rms_norm(h, (HIDDEN,), norm_w)
            gate, up = linear(mode, layer, "gate_up", x).chunk(2, dim=-1)
            h = h + linear(mode, layer, "down", torch.nn.functional.silu(gate) * up)
        return h

    rows, results = [], []
    for kind, sizes in (("decode", args.decode), ("prefill", args.prefill)):
        for size in sizes:
            decode = kind == "decode"
            gen = torch.Generator(device="cuda").manual_seed(size)
            h0 = torch.randn(size, HIDDEN, device="cuda", dtype=dtype, generator=gen)
            caches = [
                (
                    torch.randn(size, KV_HEADS, CACHE, HEAD_DIM, device="cuda", dtype=dtype, generator=gen),
                    torch.randn(size, KV_HEADS, CACHE, HEAD_DIM, device="cuda", dtype=dtype, generator=gen),
                )
                if decode
                else (None, None)
                for _ in layers
            ]
            times, outputs = {}, {}
            for mode in args.modes:
                times[mode], outputs[mode] = _time_step(
                    lambda m=mode, h=h0, c=caches, d=decode: step(m, h, c, d), args.repeats
                )
            del caches
            ref = outputs.get("dense")
            for mode in args.modes:
                err = "-" if ref is None else f"{_rel_err(outputs[mode], ref):.1e}"
                speed = "-" if "dense" not in times else f"{times['dense'] / times[mode]:.2f}x"
                rows.append([kind, str(size), mode, f"{times[mode]:.3f}", speed, err])
                results.append({"kind": kind, "tokens": size, "mode": mode, "ms": times[mode]})
    print(f"\n{args.layers}-layer Llama-3-8B-shaped step, bf16, one CUDA graph, median of {args.repeats}")
    print(table(["step", "batch/tokens", "mode", "ms", "vs dense", "rel. err"], rows))
    print()
    for label, kind, sizes, target in (
        ("decode batch 1-32", "decode", range(1, 33), 1.3),
        ("prefill 2048", "prefill", [2048], 1.4),
    ):
        got = [r for r in results if r["kind"] == kind and r["tokens"] in sizes and r["mode"] == "dispatch"]
        dense = {r["tokens"]: r["ms"] for r in results if r["kind"] == kind and r["mode"] == "dense"}
        speedups = [dense[r["tokens"]] / r["ms"] for r in got if r["tokens"] in dense]
        if not speedups:
            print(f"{label} >= {target}x: not measured")
        else:
            status = "PASS" if min(speedups) >= target else "FAIL"
            print(f"{label} >= {target}x: {status} (worst {min(speedups):.2f}x)")
    write_json(args.out, {"header": header(), "results": results})


def _time_step(fn, repeats: int) -> tuple[float, object]:
    """Median ms of one replay of the whole step captured in one CUDA graph, and the step's output."""
    from sparse24.timing import capture, median_replay_ms

    graph, out = capture(fn)
    ms = median_replay_ms(graph, repeats)
    result = out.float().clone()
    del graph
    return ms, result


def _rel_err(out, ref) -> float:
    return float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-6))


if __name__ == "__main__":
    main()
