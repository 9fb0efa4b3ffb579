"""SparseGPT (Frantar & Alistarh, 2023): prune one weight matrix with Optimal Brain Surgeon updates.

The matrix is walked column by column. Zeroing (or rounding) column i leaves an error
err_i = (w_i − q_i) / d_i, d_i = [H^-1]_ii; the OBS update spreads it onto the columns not yet processed
through the i-th row of the upper Cholesky factor of H^-1, so that the layer output X W^T changes as little
as the quadratic model allows.
Columns are processed in blocks of `block_size`: inside a block the updates are applied column by column to
that block only; the rest of the matrix receives them at once per block (the "lazy batch" trick of GPTQ).

One routine, `obs_prune`, serves three callers:
- SparseGPT itself: it chooses the mask as it goes (unstructured: per block, the lowest w²/d² of the block
  across all rows; N:M: per group of M columns, the M−N lowest w²/d² of each row — "lazy" N:M selection);
- a fixed mask computed beforehand (magnitude's or Wanda's), with OBS error compensation;
- GPTQ-style quantization in the same pass: a `ColumnQuantizer` rounds every column after masking and the
  rounding error is propagated exactly like the pruning error.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import torch

from prune_jobs.masks import NMPattern, SparsityTarget, check_nm_shape
from prune_jobs.methods import obs_sweep
from prune_jobs.quant_api import ColumnQuantizer
from prune_jobs.stats import LinearStats

DEFAULT_BLOCK_SIZE = 128
DEFAULT_DAMP = 0.01  # fraction of the mean Hessian diagonal added to the diagonal


class HessianNotPositiveDefinite(RuntimeError):
    """Even strong dampening could not make the Hessian invertible (e.g. NaN activations)."""


def inverse_hessian_factor(hessian: torch.Tensor, damp: float = DEFAULT_DAMP) -> torch.Tensor:
    """Upper Cholesky factor U of (H + λI)^-1, λ = damp · mean(diag H). hessian: [cols, cols] → [cols, cols].

    Retries with 10x the dampening (up to three times) rather than failing on a nearly singular H.
    """
    cols = hessian.shape[0]
    diag = torch.arange(cols)
    mean_diag = float(hessian.diagonal().mean())
    for attempt in range(4):
        h = hessian.clone()
        h[diag, diag] += damp * (10**attempt) * mean_diag
        lower, info = torch.linalg.cholesky_ex(h)
        if int(info) == 0:
            h_inv = torch.cholesky_inverse(lower)
            upper, info = torch.linalg.cholesky_ex(h_inv, upper=True)
            if int(info) == 0:
                return upper
    raise HessianNotPositiveDefinite(f"Hessian of size {cols} is not positive definite even with dampening")


def block_size_for(
    target: SparsityTarget | None, quantizer: ColumnQuantizer | None, preferred: int = DEFAULT_BLOCK_SIZE
) -> int:
    """A block size near `preferred` that N:M groups and quantization groups never straddle."""
    m = target.pattern.m if target is not None and target.pattern is not None else 1
    group = quantizer.group_size if quantizer is not None and quantizer.group_size else 1
    base = math.lcm(m, group)
    return base * max(1, round(preferred / base))


def obs_prune(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    *,
    target: SparsityTarget | None = None,
    keep_mask: torch.Tensor | None = None,
    quantizer: ColumnQuantizer | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    damp: float = DEFAULT_DAMP,
) -> torch.Tensor:
    """Return the pruned (and, with `quantizer`, quantized-then-dequantized) weight; `weight` is not modified.

    weight:    [rows, cols] (an nn.Linear weight: rows = out_features, cols = in_features)
    hessian:   [cols, cols] X^T X / n of the layer inputs
    target:    let OBS choose the mask (SparseGPT); or
    keep_mask: [rows, cols] bool, fixed mask to apply with error compensation; or neither (GPTQ only).
    """
    if target is not None and keep_mask is not None:
        raise ValueError("give either target (OBS chooses the mask) or keep_mask (fixed mask), not both")
    W = weight.detach().to(torch.float32).clone()  # [rows, cols]
    rows, cols = W.shape
    H = hessian.detach().to(torch.float32).clone()  # [cols, cols]
    nm = target.pattern if target is not None else None
    if nm is not None:
        check_nm_shape(cols, nm)
    group_size = quantizer.group_size if quantizer is not None else None
    if group_size is not None and cols % group_size != 0:
        raise ValueError(f"quantization group size {group_size} does not divide in_features {cols}")

    dead = H.diagonal() == 0  # inputs that were always zero: their weights cannot matter
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    Hinv = inverse_hessian_factor(H, damp)  # [cols, cols], upper triangular
    block = block_size_for(target, quantizer, block_size)

    if quantizer is not None and group_size is None:
        quantizer.start_group(W)  # per-channel: one grid for the whole row

    threads = torch.get_num_threads()
    with ThreadPoolExecutor(max(1, threads - 1), thread_name_prefix="obs-sweep") as pool:
        for i1 in range(0, cols, block):
            i2 = min(i1 + block, cols)
            Hinv1 = Hinv[i1:i2, i1:i2]  # [count, count]
            if quantizer is None:
                W1 = W[:, i1:i2].contiguous()  # [rows, count], row-major: the compiled sweep walks rows
            else:
                W1 = W[:, i1:i2].t().contiguous().t()  # column-major: the tensor sweep reads columns

            if keep_mask is not None:
                prune1 = ~keep_mask[:, i1:i2].to(torch.bool)  # [rows, count] True = zero this weight
            elif target is not None and nm is None:
                prune1 = _lowest_saliency_in_block(W1, Hinv1.diagonal(), target.sparsity)
            else:
                prune1 = torch.zeros_like(W1, dtype=torch.bool)  # N:M: filled lazily; GPTQ: nothing

            if quantizer is None:
                nm_pair = (nm.n, nm.m) if nm is not None else None
                Err1 = obs_sweep.prune_block(W1, Hinv1, prune1.contiguous(), nm_pair, pool, threads)
                Q1 = W1
            else:
                Q1, Err1 = _prune_and_quantize_block(W1, Hinv1, prune1, nm, quantizer, i1)
            W[:, i1:i2] = Q1
            W[:, i2:].sub_(Err1 @ Hinv[i1:i2, i2:])  # lazy update: [rows, count] @ [count, cols - i2]
    return W


def _prune_and_quantize_block(
    W1: torch.Tensor,
    Hinv1: torch.Tensor,
    prune1: torch.Tensor,
    nm: NMPattern | None,
    quantizer: ColumnQuantizer,
    first_column: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The OBS sweep over one block with GPTQ rounding after masking, as tensor ops (the quantizer is Python).
    W1 [rows, count] column-major (updated in place), Hinv1 [count, count], prune1 bool [rows, count] (N:M
    groups filled here) → (final values Q1, scaled errors Err1)."""
    d1 = Hinv1.diagonal()
    Q1 = torch.zeros_like(W1)  # [rows, count] final values
    Err1 = torch.zeros_like(W1)  # [rows, count] scaled errors
    group_size = quantizer.group_size
    for i in range(W1.shape[1]):
        if nm is not None and i % nm.m == 0:
            _choose_nm_group(W1, d1, prune1, i, nm)
        if group_size is not None and (first_column + i) % group_size == 0:
            quantizer.start_group(W1[:, i : i + group_size])  # groups never straddle blocks
        w = W1[:, i]  # [rows]
        # Zero lies on every grid the schemes use; masking again guards the sparsity regardless.
        q = quantizer.quantize(w.masked_fill(prune1[:, i], 0.0)).masked_fill(prune1[:, i], 0.0)
        Q1[:, i] = q
        err = (w - q) / d1[i]  # [rows]
        W1[:, i:].addr_(err, Hinv1[i, i:], alpha=-1.0)  # OBS update of the rest of the block
        Err1[:, i] = err
    return Q1, Err1


def _choose_nm_group(W1: torch.Tensor, d1: torch.Tensor, prune1: torch.Tensor, i: int, nm: NMPattern) -> None:
    """Lazy N:M: mark the M−N lowest w²/d² of columns i..i+M of every row, from weights already updated by
    the columns before them."""
    saliency = W1[:, i : i + nm.m].square() / d1[i : i + nm.m].square()  # [rows, m]
    lowest = torch.topk(saliency, nm.m - nm.n, dim=1, largest=False).indices  # [rows, m - n]
    prune1[:, i : i + nm.m].scatter_(1, lowest, True)


def _lowest_saliency_in_block(W1: torch.Tensor, d1: torch.Tensor, sparsity: float) -> torch.Tensor:
    """SparseGPT's adaptive unstructured mask: the `sparsity` fraction of the block with the lowest w²/d²,
    compared across all rows of the block (as the reference does). W1: [rows, count] → bool [rows, count]."""
    saliency = W1.square() / d1.square().unsqueeze(0)  # [rows, count]
    k = int(round(saliency.numel() * sparsity))
    prune = torch.zeros(saliency.numel(), dtype=torch.bool)
    if k > 0:
        prune[torch.topk(saliency.flatten(), k, largest=False).indices] = True
    return prune.reshape(saliency.shape)


def prune(
    weight: torch.Tensor,
    stats: LinearStats | None,
    target: SparsityTarget,
    quantizer: ColumnQuantizer | None = None,
) -> torch.Tensor:
    """The registry entry: OBS chooses the mask from the layer's Hessian."""
    if stats is None or not stats.full_hessian:
        raise ValueError("sparsegpt needs the full Hessian of the layer inputs (calibration data)")
    return obs_prune(weight, stats.hessian(), target=target, quantizer=quantizer)
