"""The kernels on a real GPU (skipped without CUDA sm80+): the mma.sp kernel against cuBLAS for odd shapes,
every token count it serves and every block variant; cuSPARSELt through its backend; the dispatch op under
CUDA-graph capture. CI has no GPU: these run where one is lent (docs/benchmarks/gpu.md)."""

import pytest
import torch

from sparse24.pattern import prune_24

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] < 8,
    reason="needs an NVIDIA GPU with sparse tensor cores (sm80+)",
)


def weight_24(n: int, k: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    gen = torch.Generator(device="cuda").manual_seed(seed)
    w = prune_24(torch.randn(n, k, generator=gen, device="cuda") / k**0.5).to(dtype)
    w[0, : min(8, k)] = 0  # groups with 0 and 1 non-zeros
    return w


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref).norm() / ref.norm().clamp_min(1e-30))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("n,k", [(64, 128), (48, 200), (100, 260), (17, 36), (4096, 4096), (1000, 1500)])
@pytest.mark.parametrize("m", [1, 3, 8, 9, 16, 17, 32])
def test_mma_sp_kernel_matches_float64_reference(n, k, m, dtype):
    from sparse24.kernel import (
        ROW_CONFIGS,
        ROWS_KERNEL,
        mma_sp_linear,
        row_config_fits,
        rows_variant,
        variants,
    )
    from sparse24.layout import pack_mma_sp

    w = weight_24(n, k, dtype, seed=n * 7 + k)
    packed = pack_mma_sp(w)
    found = variants(m, packed.n_tiles, packed.k_blocks, k)
    assert found and (k % 8 != 0 or any(v > ROWS_KERNEL for v in found))
    if k % 8 == 0:  # the row-group kernel with K unsplit and fully split, both PF, every layout
        configs = [c for c in ROW_CONFIGS if row_config_fits(m, c)]
        extra = {rows_variant(s, pf, c) for s in (1, packed.k_blocks) for pf in (1, 2) for c in configs}
        found = sorted({*found, *extra})
    for variant in found:
        x = torch.randn(m, k, device="cuda", dtype=dtype)  # fresh input per variant
        ref = x.double() @ w.double().T
        y = mma_sp_linear(x, packed, variant)
        torch.cuda.synchronize()
        assert y.shape == (m, n) and y.dtype == dtype
        assert not torch.isnan(y).any()
        err = rel_error(y, ref)
        assert err < 1e-2, f"variant {variant}: relative error {err:.2e}"


def test_row_kernel_takes_unaligned_rows_and_repeated_graph_replays():
    """A view starting 8 bytes into its storage is copied (cp.async needs 16-byte rows); the completion
    counters reset themselves, so replaying the captured split-K launch keeps giving the right answer."""
    from sparse24.kernel import mma_sp_linear, precompile, rows_variant
    from sparse24.layout import pack_mma_sp
    from sparse24.timing import capture

    w = weight_24(256, 1024, torch.bfloat16, seed=11)
    packed = pack_mma_sp(w)
    base = torch.randn(12 * 1024 + 4, device="cuda", dtype=torch.bfloat16)
    x = base[4:].view(12, 1024)
    assert x.data_ptr() % 16 == 8
    y = mma_sp_linear(x, packed, rows_variant(3))
    assert rel_error(y, x.double() @ w.double().T) < 1e-2
    for config in (0, 2, 4):  # one warp per row tile; 2 k lanes × 2 tiles per warp; 4 k lanes
        variant = rows_variant(5, 2, config)
        precompile(torch.bfloat16, 12, variant)
        x = torch.randn(12, 1024, device="cuda", dtype=torch.bfloat16)
        graph, out = capture(lambda v=variant, x=x: mma_sp_linear(x, packed, v))
        for _ in range(3):
            x.copy_(torch.randn_like(x))
            graph.replay()
            torch.cuda.synchronize()
            assert rel_error(out, x.double() @ w.double().T) < 1e-2


@pytest.mark.parametrize("m", [1, 5, 16, 64, 300])
def test_cusparselt_backend_matches_reference(m):
    from sparse24.backends import CusparseltBackend

    backend = CusparseltBackend()
    if backend.supports(1024, 2048, torch.bfloat16) is not None:
        pytest.skip(backend.supports(1024, 2048, torch.bfloat16))
    w = weight_24(1024, 2048, torch.bfloat16, seed=3)
    state = backend.prepare(w)
    x = torch.randn(m, 2048, device="cuda", dtype=torch.bfloat16)
    for variant in backend.variants(state, x):
        y = backend.run(state, x, variant)
        assert y.shape == (m, 1024)
        assert rel_error(y, x.double() @ w.double().T) < 1e-2


def test_dispatch_op_under_cuda_graph_capture():
    """The op the plugin serves with, each kernel in turn, captured in a graph and replayed on new input."""
    from sparse24.backends import CusparseltBackend, MmaSpBackend
    from sparse24.kernel import precompile
    from sparse24.ops import KERNEL_IDS
    from sparse24.timing import capture

    n, k = 512, 1024
    w = weight_24(n, k, torch.bfloat16, seed=5)
    cslt = CusparseltBackend().prepare(w)
    packed = MmaSpBackend().prepare(w)
    for m in (1, 8, 24):
        precompile(torch.bfloat16, m, 1)
        precompile(torch.bfloat16, m, 1004)
    for kernel, variant in (("dense", 0), ("cusparselt", 0), ("mma_sp", 1), ("mma_sp", 1004)):
        for m in (1, 8, 24):
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)

            def call(x=x, kernel=kernel, variant=variant):
                return torch.ops.sparsefleet.sp24_linear(
                    x,
                    w,
                    cslt,
                    packed.values,
                    packed.meta,
                    n,
                    k,
                    [32],
                    [KERNEL_IDS[kernel]],
                    [variant if kernel == "mma_sp" else 0],
                )

            graph, out = capture(call)
            x.copy_(torch.randn_like(x))
            graph.replay()
            torch.cuda.synchronize()
            assert rel_error(out, x.double() @ w.double().T) < 1e-2, (kernel, m)
