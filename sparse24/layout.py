"""Offline shuffle of a 2:4 weight into the register layout of `mma.sp.m16n8k32` (the CPU reference).

The kernel in `csrc/sp24_mma.cu` computes `y = x @ W.T` with the weight as the *sparse* operand A of
`mma.sp.sync.aligned.m16n8k32.row.col.f32.{bf16,f16}`: one instruction multiplies a 16-row × 32-input tile of
W (stored compressed: the 2 kept values of each group of 4, plus 2-bit indices) by 32 inputs × 8 tokens of x.
This module writes the weight so that every lane of a warp fetches its whole A fragment with one 16-byte load
and its metadata with one 8-byte load per 4 tiles, each byte of the compressed weight read exactly once.

Layout (PTX ISA 9.7.14.6, "sparse mma.m16n8k32 with .f16/.bf16"; lane = 4·g + t, g = lane>>2, t = lane&3):

* `values[nt, kt, lane, 0:8]` (16-bit words) are the lane's four A registers for tile (nt, kt):
  reg i holds the 2 kept values of row `g + 8·(i&1)`, group-of-4 `t + 4·(i>>1)` of the tile, the one with the
  lower index in the low half. Tile (nt, kt) covers rows `16·nt …` and inputs `32·kt …`.
* `meta[nt, kb, lane, j]` (32-bit words) is the metadata register the lane passes for tile
  `kt = 4·kb + 2·j + (t>>1)`: tiles alternate the sparsity selector (0: lanes t∈{0,1} supply metadata,
  1: lanes t∈{2,3}), so every lane's 8 bytes are useful. Within a word, bits `16·r + 4·c … +3` hold the
  group-of-4 `4·(t&1) + c` of row `g + 8·r` as two ascending 2-bit indices (`idx0 | idx1 << 2`; the only
  codes `mma.sp::ordered_metadata` accepts are 0x4, 0x8, 0xC, 0x9, 0xD, 0xE).

N is padded to a multiple of 64 (4 row tiles, so a block may take 1, 2 or 4 of them without a bounds check)
and K to a multiple of 128 (one k-block of 4 tiles) with zeros; zero groups are valid 2:4 groups.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparse24.pattern import GROUP, check_24

TILE_N = 16  # rows of W per mma
TILE_K = 32  # inputs per mma (16 kept values per row)
TILES_PER_KBLOCK = 4  # k-tiles whose metadata one lane loads at once (uint2)
LANES = 32
PAD_N = 64
PAD_K = TILE_K * TILES_PER_KBLOCK
KERNEL_DTYPES = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class PackedMmaSp:
    """A 2:4 weight shuffled for the `mma.sp` kernel. Tensors live on the device of the input weight."""

    values: torch.Tensor  # int16 [NT, KT, 32, 8]: bit patterns of the dtype below
    meta: torch.Tensor  # int32 [NT, KB, 32, 2]
    n: int  # true out_features
    k: int  # true in_features
    dtype: torch.dtype

    @property
    def n_tiles(self) -> int:
        return self.values.shape[0]

    @property
    def k_blocks(self) -> int:
        return self.meta.shape[1]

    @property
    def nbytes(self) -> int:
        return self.values.numel() * 2 + self.meta.numel() * 4


def _lane_tables(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """row[lane, reg] and group[lane, reg] of the A fragment, from the PTX fragment layout."""
    lane = torch.arange(LANES, device=device)[:, None]
    reg = torch.arange(4, device=device)[None, :]
    g, t = lane // 4, lane % 4
    return g + 8 * (reg % 2), t + 4 * (reg // 2)


def _choose_indices(groups: torch.Tensor) -> torch.Tensor:
    """Two ascending positions per group of 4: the non-zeros first, padded with the lowest zero positions."""
    position = torch.arange(GROUP, device=groups.device)
    priority = (groups == 0).to(torch.int64) * GROUP + position  # non-zeros sort before zeros
    chosen = priority.argsort(dim=-1, stable=True)[..., :2]
    return chosen.sort(dim=-1).values


def pack_mma_sp(weight: torch.Tensor) -> PackedMmaSp:
    """Shuffle a 2:4 fp16/bf16 weight `[N, K]` into the kernel's layout; ValueError if it is not 2:4."""
    if weight.dtype not in KERNEL_DTYPES:
        raise ValueError(f"the mma.sp kernel takes float16 or bfloat16 weights, got {weight.dtype}")
    check = check_24(weight)
    if not check.ok:
        raise ValueError(f"weight is not 2:4: {check.describe()}")
    n, k = weight.shape
    n_pad, k_pad = -n % PAD_N, -k % PAD_K
    w = torch.nn.functional.pad(weight, (0, k_pad, 0, n_pad))
    big_n, big_k = w.shape
    nt, kt = big_n // TILE_N, big_k // TILE_K

    groups = w.reshape(big_n, big_k // GROUP, GROUP)
    idx = _choose_indices(groups)  # [N, K/4, 2]
    kept = groups.gather(-1, idx).view(torch.int16)  # bit patterns, exact for either dtype

    # values: [NT, 16 rows, KT, 8 groups, 2] -> [NT, KT, 16, 8, 2] -> lanes.
    kept = kept.reshape(nt, TILE_N, kt, TILE_K // GROUP, 2).permute(0, 2, 1, 3, 4)
    rows, grps = _lane_tables(w.device)
    values = kept[:, :, rows, grps, :].reshape(nt, kt, LANES, 8).contiguous()

    # nibbles [NT, KT, 16 rows, 8 groups]; word (row g, pair p) packs rows g, g+8 × groups 4p..4p+3.
    nibble = (idx[..., 0] | (idx[..., 1] << 2)).reshape(nt, TILE_N, kt, 8).permute(0, 2, 1, 3)
    nibble = nibble.reshape(nt, kt, 2, 8, 2, 4)  # [NT, KT, r, g, p, c]
    r, c = torch.arange(2, device=w.device), torch.arange(4, device=w.device)
    shift = 16 * r[:, None, None, None] + 4 * c  # [r, 1, 1, c], broadcasts over [r, g, p, c]
    words = (nibble << shift).sum(dim=(2, 5))  # disjoint bits, so the sum is an OR: [NT, KT, g, p]

    # meta[nt, kb, lane, j] = words[nt, 4kb + 2j + (t>>1), g, t&1]
    kb = kt // TILES_PER_KBLOCK
    lane = torch.arange(LANES, device=w.device)
    g, t = lane // 4, lane % 4
    j = torch.arange(2, device=w.device)
    tile = 2 * j[None, :] + (t[:, None] // 2)  # [32, 2] tile within the k-block
    words = words.reshape(nt, kb, TILES_PER_KBLOCK, 8, 2)
    meta = words[:, :, tile, g[:, None], (t % 2)[:, None]]  # [NT, KB, 32, 2]
    meta = torch.where(meta >= 2**31, meta - 2**32, meta).to(torch.int32).contiguous()
    return PackedMmaSp(values=values, meta=meta, n=n, k=k, dtype=weight.dtype)


def unpack_mma_sp(packed: PackedMmaSp) -> torch.Tensor:
    """Inverse of `pack_mma_sp`, for tests: the dense `[N, K]` weight with zeros where nothing was kept."""
    nt, kt = packed.values.shape[:2]
    rows, grps = _lane_tables(packed.values.device)
    kept = torch.zeros(nt, kt, TILE_N, TILE_K // GROUP, 2, dtype=torch.int16, device=packed.values.device)
    kept[:, :, rows, grps, :] = packed.values.reshape(nt, kt, LANES, 4, 2)

    words = packed.meta.to(torch.int64) & 0xFFFFFFFF  # [NT, KB, 32, 2]
    lane = torch.arange(LANES, device=words.device)
    g, t = lane // 4, lane % 4
    dense = torch.zeros(nt, kt, TILE_N, TILE_K, dtype=torch.int16, device=words.device)
    for kk in range(TILES_PER_KBLOCK):
        j, sel = divmod(kk, 2)
        owners = (t // 2) == sel  # lanes whose word j describes tile kk of each k-block
        for lane_id in owners.nonzero().flatten().tolist():
            word = words[:, :, lane_id, j]  # [NT, KB]
            for r in range(2):
                for c in range(4):
                    nib = (word >> (16 * r + 4 * c)) & 0xF
                    row, grp = int(g[lane_id]) + 8 * r, 4 * int(t[lane_id] % 2) + c
                    for half in range(2):
                        pos = (nib >> (2 * half)) & 0x3  # [NT, KB]
                        value = kept[:, kk::TILES_PER_KBLOCK, row, grp, half]  # [NT, KB]
                        col = (GROUP * grp + pos).unsqueeze(-1)
                        dense[:, kk::TILES_PER_KBLOCK, row, :].scatter_(-1, col, value.unsqueeze(-1))
    weight = dense.permute(0, 2, 1, 3).reshape(nt * TILE_N, kt * TILE_K).view(packed.dtype)
    return weight[: packed.n, : packed.k]
