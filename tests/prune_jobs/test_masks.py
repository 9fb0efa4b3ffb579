import pytest
import torch

from prune_jobs.masks import (
    NMPattern,
    SparsityTarget,
    nm_check,
    nm_mask,
    parse_pattern,
    row_sparsities,
    unstructured_mask,
)


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (4, 8), (3, 4), (1, 2), (2, 3)])
def test_every_nm_group_keeps_exactly_n(n, m):
    scores = torch.randn(32, 24 * m).abs()
    keep = nm_mask(scores, NMPattern(n, m))
    assert (keep.reshape(32, 24, m).sum(dim=2) == n).all()
    assert nm_check(torch.randn(32, 24 * m) * keep, NMPattern(n, m)).valid


def test_nm_keeps_the_highest_scores_of_each_group():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.2, 4.0, 3.0, 2.0, 1.0]])
    keep = nm_mask(scores, NMPattern(2, 4))
    assert keep.tolist() == [[False, True, True, False, True, True, False, False]]


@pytest.mark.parametrize("sparsity", [0.1, 0.25, 0.5, 0.7, 0.9])
def test_unstructured_sparsity_is_exact_in_every_row(sparsity):
    scores = torch.randn(64, 200)
    keep = unstructured_mask(scores, sparsity)
    expected = round(200 * sparsity) / 200
    assert torch.allclose(row_sparsities(keep.float()), torch.full((64,), expected))
    # the pruned entries are the lowest of each row
    lowest_kept = torch.where(keep, scores, torch.inf).amin(dim=1)
    highest_pruned = torch.where(keep, -torch.inf, scores).amax(dim=1)
    assert (highest_pruned <= lowest_kept).all()


def test_nm_check_counts_violations():
    w = torch.ones(2, 8)
    check = nm_check(w, NMPattern(2, 4))
    assert check.groups == 4 and check.violations == 4 and not check.valid
    w[:, [0, 1, 4, 5]] = 0
    assert nm_check(w, NMPattern(2, 4)).valid


@pytest.mark.parametrize("text", ["2:3:4", "four:eight", "dense", "2-4", ""])
def test_parse_pattern_rejects_garbage(text):
    with pytest.raises(ValueError, match="unstructured"):
        parse_pattern(text)


@pytest.mark.parametrize("text", ["4:4", "5:4", "0:4", "1:1"])
def test_parse_pattern_rejects_n_not_below_m(text):
    with pytest.raises(ValueError, match="1 <= N < M"):
        parse_pattern(text)


def test_sparsity_target():
    assert parse_pattern("unstructured") is None
    assert SparsityTarget.of(parse_pattern(" 2:4 "), None).sparsity == 0.5
    assert SparsityTarget.of(NMPattern(1, 4), None).label == "1:4"
    for bad in (0.0, 1.0, -0.1, 1.5, None):
        with pytest.raises(ValueError, match=r"\(0, 1\)"):
            SparsityTarget.of(None, bad)


def test_nm_mask_rejects_indivisible_width():
    with pytest.raises(ValueError, match="divisible by 4"):
        nm_mask(torch.randn(4, 10), NMPattern(2, 4))
