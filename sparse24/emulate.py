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

ROW_GROUP = 8  # row tiles per block of the row-group kernel (SP24_ROW_GROUP, kernel.ROW_GROUP)

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
    a, e = _a_and_e(packed, nt)
    kt = torch.arange(kt_total)
    # B registers: lane (g, t), reg r = x[8·mt + g, 32·kt + 2t + 8r, +1], zero when the token or input
    # is out of range (the kernel's `row_ok && k < K`).
    padded = torch.zeros(token_tiles * 8, kt_total * TILE_K, dtype=torch.float64)
    padded[:m, :k] = x.to(torch.float64)
    rows = torch.arange(token_tiles)[:, None, None, None] * 8 + _G[None, :, None, None]  # [MT, 32, 1, 1]
    cols = 2 * _T[:, None, None] + 8 * _REG[None, :, None] + torch.arange(2)[None, None, :]  # [32, 4, 2]
    b = padded[rows[None], kt[:, None, None, None, None] * TILE_K + cols[None, None]]  # [KT, MT, 32, 4, 2]

    acc = _tile_products(a, e, b).sum(dim=1)  # split-K sum (the kernel: per warp, then across warps)
    return _write_output(acc, nt, m, packed.n, x.dtype, exact)


def emulate_rows_kernel(
    packed: PackedMmaSp, x: torch.Tensor, splits: int, exact: bool = False
) -> torch.Tensor:
    """What the row-group kernel `sp24_mma_rows<dtype, MT>` writes with K split `splits` ways.

    Grid (row groups of 8 tiles, splits); warp w of group b computes row tile 8·b + w (warps past the last
    tile compute nothing that is stored); slice s covers k-blocks [KB·s/S, KB·(s+1)/S). x reaches the
    tensor cores through shared memory: each k-block is staged as 8·MT rows × 128 inputs by 16-byte
    cp.async chunks, zero-filled past M and K, and the B registers come from `ldmatrix.x4`, modelled here
    from its PTX definition (lane l supplies the address of row l&7 of matrix l>>3; thread (g, t) receives
    elements 2t, 2t+1 of row g of matrix r in register r), fed by the kernel's own addresses.
    """
    m, k = x.shape
    if k != packed.k:
        raise ValueError(f"x has {k} inputs, the weight {packed.k}")
    if m > 32:
        raise ValueError("the kernel covers at most 32 tokens (4 token tiles of 8)")
    if k % 8:
        raise ValueError("the row-group kernel copies x in 16-byte chunks: K must be a multiple of 8")
    nt_total, kt_total = packed.values.shape[:2]
    kb_total = kt_total // TILES_PER_KBLOCK
    if not 1 <= splits <= kb_total:
        raise ValueError(f"splits must be in 1..{kb_total}, got {splits}")
    token_tiles = 1 if m <= 8 else 2 if m <= 16 else 4  # the template MT
    groups = -(-nt_total // ROW_GROUP)
    warp_tile = torch.arange(groups * ROW_GROUP)  # nt = 8·blockIdx.x + warp
    nt = warp_tile[warp_tile < nt_total]  # idle warps store nothing

    a, e = _a_and_e(packed, nt)
    # Staged x: stage_x copies chunk c (inputs 8c..8c+7 of the k-block) of row `row` when row < M and
    # kb·128 + 8c < K, else writes zeros; a row is 128 inputs (272 bytes with padding, not modelled).
    staged = torch.zeros(kb_total, token_tiles * 8, TILE_K * TILES_PER_KBLOCK, dtype=torch.float64)
    chunk_ok = (torch.arange(kb_total)[:, None] * 128 + torch.arange(16)[None, :] * 8) < k  # [KB, 16]
    padded = torch.zeros(token_tiles * 8, kb_total * 128, dtype=torch.float64)
    padded[:m, :k] = x.to(torch.float64)
    staged[:, :m] = padded[:m].reshape(m, kb_total, 128).transpose(0, 1)
    staged *= chunk_ok.repeat_interleave(8, dim=1)[:, None, :]
    # ldmatrix for tile kk, token tile mt: lane l's address = row 8·mt + (l&7), input 32·kk + 8·(l>>3).
    lane = torch.arange(LANES)
    addr_row = lane & 7  # + 8·mt
    addr_col = 8 * (lane >> 3)  # + 32·kk
    # thread (g, t), register r, half h <- address of lane 8r + g, element 2t + h
    src = 8 * _REG[None, :, None] + _G[:, None, None]  # [32, 4, 1]
    elem = 2 * _T[:, None, None] + torch.arange(2)[None, None, :]  # [32, 1, 2]
    rows = addr_row[src].expand(LANES, 4, 2)  # [32, 4, 2]
    cols = (addr_col[src] + elem).expand(LANES, 4, 2)
    kt = torch.arange(kt_total)
    kb, kk = kt // TILES_PER_KBLOCK, kt % TILES_PER_KBLOCK
    mt = torch.arange(token_tiles)
    b = staged[
        kb[:, None, None, None, None],
        (8 * mt)[None, :, None, None, None] + rows[None, None],
        (32 * kk)[:, None, None, None, None] + cols[None, None],
    ]  # [KT, MT, 32, 4, 2]

    products = _tile_products(a, e, b)  # [NT, KT, MT, 32, 4]
    acc = torch.zeros(nt.numel(), token_tiles, LANES, 4, dtype=torch.float64)
    for s in range(splits):  # partials per slice, summed in slice order by the last block of the group
        kb0, kb1 = kb_total * s // splits, kb_total * (s + 1) // splits
        acc += products[:, kb0 * TILES_PER_KBLOCK : kb1 * TILES_PER_KBLOCK].sum(dim=1)
    return _write_output(acc, nt, m, packed.n, x.dtype, exact)


def _a_and_e(packed: PackedMmaSp, nt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A registers [NT, KT, 32, 4, 2] (one 16-byte load per lane and tile: vals[(nt·KT + kt)·32 + lane]) and
    metadata registers [NT, KT, 32] (one 8-byte load per lane and k-block: tile kk uses word kk>>1)."""
    kt_total = packed.values.shape[1]
    a = packed.values[nt].view(packed.dtype).to(torch.float64).reshape(nt.numel(), kt_total, LANES, 4, 2)
    kt = torch.arange(kt_total)
    words = (packed.meta[nt].to(torch.int64) & 0xFFFFFFFF).transpose(2, 3)  # [NT, KB, word, lane]
    return a, words[:, kt // TILES_PER_KBLOCK, (kt % TILES_PER_KBLOCK) // 2]


def _tile_products(a: torch.Tensor, e: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """One mma.sp per (row tile, k tile, token tile), selector kt&1 as the kernels alternate it."""
    n_tiles, kt_total = a.shape[:2]
    token_tiles = b.shape[1]
    out = torch.zeros(n_tiles, kt_total, token_tiles, LANES, 4, dtype=torch.float64)
    kt = torch.arange(kt_total)
    for selector in (0, 1):
        tiles = kt[kt % 2 == selector]
        a_s = a[:, tiles, None].expand(-1, -1, token_tiles, -1, -1, -1)
        e_s = e[:, tiles, None].expand(-1, -1, token_tiles, -1)
        b_s = b[tiles][None].expand(n_tiles, -1, -1, -1, -1, -1)
        shape = a_s.shape[:3]
        d = mma_sp_m16n8k32(
            a_s.reshape(-1, LANES, 4, 2), b_s.reshape(-1, LANES, 4, 2), e_s.reshape(-1, LANES), selector
        )
        out[:, tiles] = d.reshape(*shape, LANES, 4)
    return out


def _write_output(
    acc: torch.Tensor, nt: torch.Tensor, m: int, n: int, dtype: torch.dtype, exact: bool
) -> torch.Tensor:
    """Scatter accumulators [NT, MT, 32, 4] to y [M, N] as the kernels do, dropping padding rows/tokens."""
    token_tiles = acc.shape[1]
    # Accumulator reg i of lane (g, t): token 8·mt + 2t + (i&1), output feature 16·nt + g + 8·(i>>1).
    token = torch.arange(token_tiles)[:, None, None] * 8 + 2 * _T[None, :, None] + _REG[None, None, :] % 2
    feature = nt[:, None, None] * TILE_N + (_G[:, None] + 8 * (_REG[None, :] // 2))[None]  # [NT, 32, 4]
    token, feature = token[None].expand_as(acc), feature[:, None].expand_as(acc)
    keep = (token < m) & (feature < n)
    y = torch.zeros(m, n, dtype=torch.float64)
    y[token[keep], feature[keep]] = acc[keep]
    return y if exact else y.to(dtype)
