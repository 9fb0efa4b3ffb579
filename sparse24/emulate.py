"""A CPU model of the `mma.sp` kernel, so CI can check the packed layout without a GPU.

Two halves, written independently on purpose:

* `mma_sp_m16n8k32` is the instruction as the PTX ISA specifies it (fragments of A, B, C/D and the metadata
  operand distributed over 32 lanes). It knows nothing about how our weights are stored.
* `emulate_kernel` walks the grid of `csrc/sp24_mma.cu` the way the CUDA code does — the same tiles,
  k-blocks, lane offsets, selector alternation, bounds checks and output indexing — fetches each lane's
  registers from the packed tensors and feeds them to the instruction model.

If the result equals `x @ W.T`, the packer and the kernel's indexing agree with the instruction's layout.
"""

from __future__ import annotations

import torch

from sparse24.layout import LANES, TILE_K, TILE_N, TILES_PER_KBLOCK, PackedMmaSp

_LANE = torch.arange(LANES)
_G, _T = _LANE // 4, _LANE % 4
_REG = torch.arange(4)


def mma_sp_m16n8k32(
    a: torch.Tensor, b: torch.Tensor, e: torch.Tensor, selector: int, c: torch.Tensor | None = None
) -> torch.Tensor:
    """D = A·B + C for a batch of warps, A 2:4-sparse, per the PTX fragment layouts of `.f16/.bf16` m16n8k32.

    a: [W, 32, 4, 2] the two kept values in each lane's 4 A registers; b: [W, 32, 4, 2] the lanes' 4 B
    registers; e: [W, 32] metadata registers (uint32 values in int64); c: [W, 32, 4] or None.
    Returns the lanes' 4 accumulator registers [W, 32, 4], computed in float64.
    """
    if selector not in (0, 1):
        raise ValueError("m16n8k32 sparsity selector must be 0 (T0,T1 supply metadata) or 1 (T2,T3)")
    w = a.shape[0]
    # A fragment: reg i of lane (g, t) holds group-of-4 t + 4(i>>1) of row g + 8(i&1).
    row = _G[:, None] + 8 * (_REG[None, :] % 2)  # [32, 4]
    grp = _T[:, None] + 4 * (_REG[None, :] // 2)
    # Metadata: in each group of 4 lanes, thread 2·selector + (group >= 4) holds rows g (bits 0-15) and
    # g+8 (bits 16-31), 4 bits per group of 4 inputs.
    owner = 4 * (row % 8) + 2 * selector + grp // 4
    shift = 16 * (row // 8) + 4 * (grp % 4)
    nib = (e[:, owner] >> shift) & 0xF  # [W, 32, 4]
    idx = torch.stack([nib & 0x3, nib >> 2], dim=-1)  # [W, 32, 4, 2]
    if bool((idx[..., 0] >= idx[..., 1]).any()):
        raise ValueError("metadata indices must be distinct and ascending (ordered_metadata)")
    col = 4 * grp[None, :, :, None] + idx
    flat = (row[None, :, :, None] * TILE_K + col).reshape(w, -1)
    dense_a = torch.zeros(w, TILE_N * TILE_K, dtype=torch.float64)
    dense_a.scatter_(1, flat, a.reshape(w, -1).to(torch.float64))
    dense_a = dense_a.reshape(w, TILE_N, TILE_K)
    # B fragment (32 × 8): reg r of lane (g, t) holds rows 2t + 8r, 2t + 8r + 1 of column g.
    k_of = (2 * _T[:, None, None] + 8 * _REG[None, :, None] + torch.arange(2)[None, None, :]).expand(32, 4, 2)
    n_of = _G[:, None, None].expand(32, 4, 2)
    dense_b = torch.zeros(w, TILE_K, 8, dtype=torch.float64)
    dense_b[:, k_of.reshape(-1), n_of.reshape(-1)] = b.reshape(w, -1).to(torch.float64)
    d = dense_a @ dense_b  # [W, 16, 8]
    # C/D fragment: reg i of lane (g, t) is row g + 8(i>>1), column 2t + (i&1).
    d_row = _G[:, None] + 8 * (_REG[None, :] // 2)
    d_col = 2 * _T[:, None] + _REG[None, :] % 2
    out = d[:, d_row, d_col]
    return out if c is None else out + c.to(torch.float64)


def emulate_kernel(
    packed: PackedMmaSp, x: torch.Tensor, n_tiles_per_block: int = 1, exact: bool = False
) -> torch.Tensor:
    """What `sp24_mma_gemm<dtype, MT, NTB>` writes for `y = x @ W.T` (x: [M, K], M ≤ 32).

    In x.dtype like the kernel, or in float64 before the final rounding with `exact=True` (the kernel
    accumulates in fp32, the model in fp64: layout errors show up as O(1) differences, not rounding).
    All tiles are batched, but every index below is the one the CUDA code computes.
    """
    m, k = x.shape
    if k != packed.k:
        raise ValueError(f"x has {k} inputs, the weight {packed.k}")
    if m > 32:
        raise ValueError("the kernel covers at most 32 tokens (4 token tiles of 8)")
    nt_total, kt_total = packed.values.shape[:2]
    if nt_total % n_tiles_per_block:
        raise ValueError(f"{nt_total} row tiles do not split into blocks of {n_tiles_per_block}")
    token_tiles = (m + 7) // 8

    # Block b, tile j of the block -> row tile nt0 + j with nt0 = b·NTB (the grid covers every row tile once).
    block, j = torch.meshgrid(
        torch.arange(nt_total // n_tiles_per_block), torch.arange(n_tiles_per_block), indexing="ij"
    )
    nt = (block * n_tiles_per_block + j).reshape(-1)
    # A registers: one 16-byte load per lane and tile: vals[(nt·KT + kb·4 + kk)·32 + lane].
    a = packed.values[nt].view(packed.dtype).to(torch.float64).reshape(nt.numel(), kt_total, LANES, 4, 2)
    # Metadata: one 8-byte load per lane and k-block; tile kk of the block uses word kk>>1, selector kk&1.
    kt = torch.arange(kt_total)
    words = (packed.meta[nt].to(torch.int64) & 0xFFFFFFFF).transpose(2, 3)  # [NT, KB, word, lane]
    e = words[:, kt // TILES_PER_KBLOCK, (kt % TILES_PER_KBLOCK) // 2]  # [NT, KT, 32]
    # B registers: lane (g, t), reg r = x[8·mt + g, 32·kt + 2t + 8r, +1], zero when the token or input
    # is out of range (the kernel's `row_ok && k < K`).
    padded = torch.zeros(token_tiles * 8, kt_total * TILE_K, dtype=torch.float64)
    padded[:m, :k] = x.to(torch.float64)
    rows = torch.arange(token_tiles)[:, None, None, None] * 8 + _G[None, :, None, None]  # [MT, 32, 1, 1]
    cols = 2 * _T[:, None, None] + 8 * _REG[None, :, None] + torch.arange(2)[None, None, :]  # [32, 4, 2]
    b = padded[rows[None], kt[:, None, None, None, None] * TILE_K + cols[None, None]]  # [KT, MT, 32, 4, 2]

    acc = torch.zeros(nt.numel(), token_tiles, LANES, 4, dtype=torch.float64)
    for selector in (0, 1):
        tiles = kt[kt % 2 == selector]
        a_s = a[:, tiles, None].expand(-1, -1, token_tiles, -1, -1, -1)
        e_s = e[:, tiles, None].expand(-1, -1, token_tiles, -1)
        b_s = b[tiles][None].expand(nt.numel(), -1, -1, -1, -1, -1)
        shape = a_s.shape[:3]
        d = mma_sp_m16n8k32(
            a_s.reshape(-1, LANES, 4, 2), b_s.reshape(-1, LANES, 4, 2), e_s.reshape(-1, LANES), selector
        )
        acc += d.reshape(*shape, LANES, 4).sum(dim=1)  # split-K sum (the kernel: per warp, then across warps)

    # Accumulator reg i of lane (g, t): token 8·mt + 2t + (i&1), output feature 16·nt + g + 8·(i>>1).
    token = torch.arange(token_tiles)[:, None, None] * 8 + 2 * _T[None, :, None] + _REG[None, None, :] % 2
    feature = nt[:, None, None] * TILE_N + (_G[:, None] + 8 * (_REG[None, :] // 2))[None]  # [NT, 32, 4]
    token, feature = token[None].expand_as(acc), feature[:, None].expand_as(acc)
    keep = (token < m) & (feature < packed.n)
    y = torch.zeros(m, packed.n, dtype=torch.float64)
    y[token[keep], feature[keep]] = acc[keep]
    return y if exact else y.to(x.dtype)
