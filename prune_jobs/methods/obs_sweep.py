"""The inner OBS sweep of SparseGPT (pruning only) as compiled code, rows split over the cores.

Inside one block of columns, each column's error is spread onto the block's later columns before the next
column is looked at: `count` dependent updates. As tensor ops that is two calls per column on
[rows, ≤ block] slices (~150,000 columns per SmolLM2 job), bound by call overhead and by streaming the block
through the cache once per column. But each row's sweep depends only on that row and on the block of the
inverse Hessian factor U, so here chunks of 64 rows are walked through the whole block while they sit in L1
(transposed, so the innermost loops run across rows in SIMD lanes), the errors of every 4 columns (one N:M
group) reach the later columns in one pass, and the chunks are split over threads (the compiled function
releases the GIL). Per element the float32 operations and their order are those of the column-by-column
algorithm (err = w_i / d_i, then w_j −= err · U_ij for i = 1, 2, ...): the result is bit-identical to it,
which tests/prune_jobs/test_obs_sweep.py checks against tensor ops.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np
import torch


@cache
def _kernel():  # noqa: ANN202 - a numba dispatcher
    """Compiled on first use (~2 s; cached on disk by numba, so once per install): importing numba costs
    ~0.5 s that most commands never need."""
    import numba

    def sweep_rows(W, Hinv, prune, err, keep_n, group_m, first, last):  # noqa: ANN001, ANN202
        count = W.shape[1]
        CH = 64  # rows per chunk: a [count, CH] float32 chunk of a 128-column block is 32 KiB, in L1
        G = group_m if group_m > 0 else 4  # columns whose updates of later columns are applied in one pass
        buf = np.empty((count, CH), dtype=np.float32)
        pb = np.empty((count, CH), dtype=np.bool_)
        E = np.empty((G, CH), dtype=np.float32)
        sal = np.empty((G, CH), dtype=np.float32)
        rank = np.empty(CH, dtype=np.int32)
        for r0 in range(first, last, CH):
            n = min(CH, last - r0)
            # transposed into the chunk buffers so that the innermost loops run over rows, in SIMD lanes
            for r in range(n):
                for c in range(count):
                    buf[c, r] = W[r0 + r, c]
                    pb[c, r] = prune[r0 + r, c]
            for g0 in range(0, count, G):
                g1 = min(g0 + G, count)
                if group_m > 0:
                    # lazy N:M: prune the m − n lowest w²/d² of the group, from weights already updated by
                    # every earlier column; a rank count over the group, ties to the lower column
                    for k in range(group_m):
                        d = Hinv[g0 + k, g0 + k]
                        dd = d * d
                        bk = buf[g0 + k]
                        sk = sal[k]
                        for r in range(n):
                            sk[r] = (bk[r] * bk[r]) / dd
                    drop = group_m - keep_n
                    for k in range(group_m):
                        sk = sal[k]
                        for r in range(n):
                            rank[r] = 0
                        for other in range(group_m):
                            if other == k:
                                continue
                            so = sal[other]
                            if other < k:  # ties go to the lower index, as a first-lowest search would
                                for r in range(n):
                                    rank[r] += so[r] <= sk[r]
                            else:
                                for r in range(n):
                                    rank[r] += so[r] < sk[r]
                        pk = pb[g0 + k]
                        for r in range(n):
                            pk[r] = rank[r] < drop
                for i in range(g0, g1):  # the group's own columns, one by one
                    d = Hinv[i, i]
                    e = E[i - g0]
                    for r in range(n):
                        e[r] = buf[i, r] / d if pb[i, r] else np.float32(0.0)
                    for j in range(i + 1, g1):
                        h = Hinv[i, j]
                        bj = buf[j]
                        for r in range(n):
                            bj[r] -= e[r] * h
                    for r in range(n):
                        if pb[i, r]:
                            buf[i, r] = 0.0
                        err[r0 + r, i] = e[r]
                # The group's errors reach every later column in one pass; per element the subtractions
                # still come in column order, so the result is bit-identical to one column at a time.
                # Groups of 4 (2:4, and every fixed mask) get the unrolled form: the sweep ~20% faster.
                if g1 - g0 == 4:
                    e0, e1, e2, e3 = E[0], E[1], E[2], E[3]
                    for j in range(g1, count):
                        h0, h1, h2, h3 = Hinv[g0, j], Hinv[g0 + 1, j], Hinv[g0 + 2, j], Hinv[g0 + 3, j]
                        bj = buf[j]
                        for r in range(n):
                            v = bj[r]
                            v -= e0[r] * h0
                            v -= e1[r] * h1
                            v -= e2[r] * h2
                            v -= e3[r] * h3
                            bj[r] = v
                else:
                    for j in range(g1, count):
                        bj = buf[j]
                        for t in range(g1 - g0):
                            h = Hinv[g0 + t, j]
                            e = E[t]
                            for r in range(n):
                                bj[r] -= e[r] * h
            for r in range(n):
                for c in range(count):
                    W[r0 + r, c] = buf[c, r]
                    prune[r0 + r, c] = pb[c, r]

    try:
        return numba.njit(nogil=True, cache=True)(sweep_rows)
    except RuntimeError:  # no writable cache location (read-only install, no home): compile every run
        return numba.njit(nogil=True)(sweep_rows)


def prune_block(
    W1: torch.Tensor,
    Hinv1: torch.Tensor,
    prune1: torch.Tensor,
    nm: tuple[int, int] | None,
    pool: ThreadPoolExecutor,
    threads: int,
) -> torch.Tensor:
    """The OBS sweep over one block, pruning only, in place.

    W1:     [rows, count] float32, row-major; leaves holding the final values (pruned entries exactly 0)
    Hinv1:  [count, count] float32, the block's part of the upper Cholesky factor of H^-1
    prune1: [rows, count] bool, True = zero this weight; with nm = (n, m): all False, N:M chosen here
    pool:   at least `threads` − 1 workers; the rows are split over them and the calling thread
    → Err1 [rows, count]: the scaled errors (w − q) / d the rest of the matrix is updated with.
    """
    if not (W1.is_contiguous() and prune1.is_contiguous()):
        raise ValueError("prune_block needs row-major W1 and prune1")
    err = torch.empty_like(W1)
    w_np, h_np, p_np, e_np = W1.numpy(), Hinv1.contiguous().numpy(), prune1.numpy(), err.numpy()
    keep_n, group_m = nm if nm is not None else (0, 0)
    kernel = _kernel()
    rows = W1.shape[0]
    parts = max(1, min(threads, rows // 32))  # a thread per few dozen rows at least
    bounds = [rows * k // parts for k in range(parts + 1)]
    futures = [
        pool.submit(kernel, w_np, h_np, p_np, e_np, keep_n, group_m, bounds[k], bounds[k + 1])
        for k in range(1, parts)
    ]
    kernel(w_np, h_np, p_np, e_np, keep_n, group_m, bounds[0], bounds[1])  # the first part on this thread
    for future in futures:
        future.result()
    return err
