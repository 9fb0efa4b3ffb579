"""The compiled OBS block sweep against the same sweep as tensor ops, and its rows split over threads."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from prune_jobs.masks import NMPattern, SparsityTarget, nm_check
from prune_jobs.methods import obs_sweep
from prune_jobs.methods.sparsegpt import inverse_hessian_factor, obs_prune
from tests.prune_jobs.helpers import correlated_inputs


def tensor_sweep(w: torch.Tensor, hinv: torch.Tensor, prune: torch.Tensor, nm: tuple[int, int] | None):
    """One block, column by column with whole-column tensor ops (the form of the SparseGPT reference)."""
    w, prune = w.clone(), prune.clone()
    err = torch.zeros_like(w)
    d = hinv.diagonal()
    for i in range(w.shape[1]):
        if nm is not None and i % nm[1] == 0:
            n, m = nm
            saliency = w[:, i : i + m].square() / d[i : i + m].square()
            prune[:, i : i + m].scatter_(1, saliency.topk(m - n, dim=1, largest=False).indices, True)
        err[:, i] = torch.where(prune[:, i], w[:, i] / d[i], 0.0)
        w[:, i:] -= torch.outer(err[:, i], hinv[i, i:])
    return w.masked_fill(prune, 0.0), err, prune


def block_inputs(rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x = correlated_inputs(2048, cols)
    hinv = inverse_hessian_factor(x.T @ x / x.shape[0])
    return torch.randn(rows, cols), hinv


@pytest.mark.parametrize("nm", [(2, 4), (1, 4), (4, 8), None])
@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_sweep_equals_the_tensor_sweep(nm, threads):
    rows, cols = 75, 64  # rows not a multiple of the thread count
    w, hinv = block_inputs(rows, cols)
    # N:M: chosen by the sweep; otherwise a fixed random mask (Wanda/magnitude with OBS compensation)
    prune = torch.zeros(rows, cols, dtype=torch.bool) if nm is not None else torch.rand(rows, cols) < 0.5
    expected_w, expected_err, expected_prune = tensor_sweep(w, hinv, prune, nm)

    w1, prune1 = w.clone(), prune.clone()
    with ThreadPoolExecutor(threads) as pool:
        err = obs_sweep.prune_block(w1, hinv, prune1, nm, pool, threads)
    assert torch.equal(prune1, expected_prune)
    assert torch.equal(w1 == 0, expected_prune)  # pruned entries exactly zero, kept ones not
    # the same float32 operations in the same order per element: the very same bits
    assert torch.equal(w1, expected_w)
    assert torch.equal(err, expected_err)


def test_the_thread_count_does_not_change_the_bits():
    """Rows are independent inside a sweep: splitting them over threads must give the very same result."""
    w, hinv = block_inputs(203, 128)  # 203 rows: chunks of 64 rows and a remainder, split unevenly
    results = []
    for threads in (1, 2, 3):
        w1, prune1 = w.clone(), torch.zeros(w.shape, dtype=torch.bool)
        with ThreadPoolExecutor(threads) as pool:
            err = obs_sweep.prune_block(w1, hinv, prune1, (2, 4), pool, threads)
        results.append((w1, prune1, err))
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other, strict=True))
    assert nm_check(results[0][0], NMPattern(2, 4)).valid


def test_sparsegpt_through_the_compiled_sweep_gives_valid_masks():
    torch.manual_seed(1)
    x = correlated_inputs(4096, 256)
    h = x.T @ x / x.shape[0]
    w = torch.randn(67, 256)
    for pattern in (NMPattern(2, 4), NMPattern(4, 8)):
        out = obs_prune(w, h, target=SparsityTarget.of(pattern, None))
        assert nm_check(out, pattern).valid and torch.isfinite(out).all()
        assert int((out == 0).sum()) == w.numel() * (pattern.m - pattern.n) // pattern.m


def test_a_column_major_block_is_refused():
    w, hinv = block_inputs(8, 16)
    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="row-major"):
        column_major = w.t().contiguous().t()
        obs_sweep.prune_block(column_major, hinv, torch.zeros(8, 16, dtype=torch.bool), None, pool, 1)
