"""The offline shuffle for the mma.sp kernel, checked against a model of the instruction from the PTX ISA.

This is the CI stand-in for running the CUDA kernel: `emulate_kernel` walks the kernel's grid with its
indexing and feeds each lane's registers to `mma_sp_m16n8k32`, which implements the fragment/metadata
layout of `mma.sp.m16n8k32` for 16-bit types independently of the packer.
"""

import pytest
import torch

from sparse24.emulate import emulate_kernel, emulate_rows_kernel, mma_sp_m16n8k32
from sparse24.layout import PAD_K, PAD_N, pack_mma_sp, unpack_mma_sp
from sparse24.pattern import prune_24

VALID_CODES = {0x4, 0x8, 0xC, 0x9, 0xD, 0xE}  # (idx0 < idx1), what mma.sp::ordered_metadata accepts


def weight_24(n, k, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    w = prune_24(torch.randn(n, k, generator=gen)).to(dtype)
    w[0, : min(8, k)] = 0  # groups with 0 and 1 non-zeros must pack too
    if n > 1 and k > 4:
        w[1, 4] = 0
    return w


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("n,k", [(64, 128), (48, 200), (100, 260), (17, 36)])
def test_pack_round_trips_bit_exactly(n, k, dtype):
    w = weight_24(n, k, dtype)
    packed = pack_mma_sp(w)
    assert packed.values.shape == (-(-n // PAD_N) * 4, -(-k // PAD_K) * 4, 32, 8)
    assert packed.meta.shape == (packed.values.shape[0], packed.values.shape[1] // 4, 32, 2)
    assert torch.equal(unpack_mma_sp(packed).view(torch.int16), w.view(torch.int16))
    # half the values plus 2-bit indices: 56.25% of the dense bytes (before padding)
    assert packed.nbytes == pytest.approx(
        0.5625 * packed.values.shape[0] * 16 * packed.values.shape[1] * 32 * 2
    )


def test_metadata_uses_only_ordered_codes():
    packed = pack_mma_sp(weight_24(64, 256, torch.bfloat16))
    words = packed.meta.to(torch.int64) & 0xFFFFFFFF
    nibbles = torch.stack([(words >> (4 * i)) & 0xF for i in range(8)])
    assert set(nibbles.unique().tolist()) <= VALID_CODES


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    "n,k,m,blocks",
    [
        (64, 128, 1, 1),
        (48, 200, 5, 2),
        (100, 260, 17, 1),
        (17, 36, 32, 4),
        (128, 384, 9, 2),
        (64, 128, 16, 4),
    ],
)
def test_kernel_model_matches_dense_reference(n, k, m, blocks, dtype):
    w = weight_24(n, k, dtype, seed=n + k)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m)).to(dtype)
    y = emulate_kernel(pack_mma_sp(w), x, blocks, exact=True)
    reference = x.double() @ w.double().T
    assert y.shape == (m, n)
    torch.testing.assert_close(y, reference, rtol=1e-12, atol=1e-12)


def test_kernel_model_rounds_to_the_activation_dtype():
    w, x = weight_24(64, 128, torch.bfloat16), torch.randn(3, 128).to(torch.bfloat16)
    y = emulate_kernel(pack_mma_sp(w), x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y, (x.double() @ w.double().T).to(torch.bfloat16), rtol=0, atol=0)


def test_a_corrupted_layout_is_caught():
    """The comparison above can fail: swap two lanes' fragments and the result is wrong."""
    w, x = weight_24(64, 128, torch.float16), torch.randn(4, 128).to(torch.float16)
    packed = pack_mma_sp(w)
    values = packed.values.clone()
    values[:, :, [0, 1]] = values[:, :, [1, 0]]
    broken = type(packed)(values, packed.meta, packed.n, packed.k, packed.dtype)
    y = emulate_kernel(broken, x, exact=True)
    assert not torch.allclose(y, x.double() @ w.double().T, rtol=1e-3, atol=1e-3)


def test_selector_picks_the_lane_pair_holding_metadata():
    """Same A, its metadata given to lanes t in {0,1} (selector 0) or {2,3} (selector 1): same product."""
    gen = torch.Generator().manual_seed(1)
    dense_a = prune_24(torch.randn(16, 32, generator=gen)).to(torch.float16)
    packed = pack_mma_sp(torch.nn.functional.pad(dense_a, (0, 96, 0, 48)))
    a = packed.values[0, 0].view(torch.float16).reshape(1, 32, 4, 2)
    b = torch.randn(1, 32, 4, 2, generator=gen)
    words = packed.meta[0, 0, :, 0].to(torch.int64) & 0xFFFFFFFF  # tile 0: lanes t<2 own it (selector 0)
    d0 = mma_sp_m16n8k32(a, b, words.reshape(1, 32), selector=0)
    moved = words.reshape(8, 4)[:, [2, 3, 0, 1]].reshape(1, 32)  # hand the words to lanes t in {2,3}
    d1 = mma_sp_m16n8k32(a, b, moved, selector=1)
    torch.testing.assert_close(d0, d1)
    with pytest.raises(ValueError, match="selector"):
        mma_sp_m16n8k32(a, b, words.reshape(1, 32), selector=2)


def test_pack_refuses_what_the_kernel_cannot_take():
    with pytest.raises(ValueError, match="not 2:4"):
        pack_mma_sp(torch.ones(16, 32, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="float16 or bfloat16"):
        pack_mma_sp(prune_24(torch.randn(16, 32)))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    "n,k,m,splits",
    [
        (64, 128, 1, 1),  # one row group of 4 tiles: warps 4-7 idle
        (48, 200, 5, 2),  # K = 200: the last chunk of the second k-block is zero-filled
        (200, 384, 9, 3),  # 2 row groups, token tiles 2
        (17, 512, 32, 4),  # token tiles 4, one k-block per slice
        (300, 1000, 17, 5),  # uneven slices (8 k-blocks over 5)
        (128, 256, 16, 1),
    ],
)
def test_row_kernel_model_matches_dense_reference(n, k, m, splits, dtype):
    w = weight_24(n, k, dtype, seed=n + k)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m)).to(dtype)
    y = emulate_rows_kernel(pack_mma_sp(w), x, splits, exact=True)
    assert y.shape == (m, n)
    torch.testing.assert_close(y, x.double() @ w.double().T, rtol=1e-12, atol=1e-12)


def test_row_kernel_model_refuses_what_the_kernel_cannot_take():
    packed = pack_mma_sp(weight_24(64, 260, torch.bfloat16))
    with pytest.raises(ValueError, match="multiple of 8"):
        emulate_rows_kernel(packed, torch.randn(2, 260).to(torch.bfloat16), 1)
    packed = pack_mma_sp(weight_24(64, 256, torch.bfloat16))
    with pytest.raises(ValueError, match="splits"):
        emulate_rows_kernel(packed, torch.randn(2, 256).to(torch.bfloat16), 3)  # 2 k-blocks
