"""The 2:4 check and the magnitude 2:4 maker used by tests and benchmarks."""

import pytest
import torch

from sparse24.pattern import check_24, prune_24


def test_prune_24_keeps_the_two_largest_of_every_group():
    w = torch.tensor([[1.0, -5.0, 3.0, 0.5, 0.0, 0.0, 0.0, 2.0]])
    assert prune_24(w).tolist() == [[0.0, -5.0, 3.0, 0.0, 0.0, 0.0, 0.0, 2.0]]
    assert not torch.signbit(prune_24(-torch.ones(2, 8))[prune_24(-torch.ones(2, 8)) == 0]).any()


def test_check_accepts_24_and_sparser_groups():
    w = prune_24(torch.randn(32, 64))
    w[3, :8] = 0  # fewer than 2 non-zeros is fine
    check = check_24(w)
    assert check.ok and check.groups == 32 * 16 and check.violations == 0


def test_check_reports_count_and_first_violation():
    w = prune_24(torch.randn(8, 16))
    w[2, 5:8] = 1.0  # group 1 of row 2: three non-zeros
    w[6, :] = 1.0  # four more bad groups
    check = check_24(w)
    assert not check.ok
    assert check.violations == 5 and (check.first_row, check.first_col) == (2, 4)
    assert "5 of 32 groups" in check.describe() and "columns 4-7" in check.describe()


@pytest.mark.parametrize("shape,reason", [((4, 6), "not a multiple of 4"), ((2, 2, 4), "2-D")])
def test_check_rejects_shapes_that_cannot_be_24(shape, reason):
    check = check_24(torch.zeros(shape))
    assert not check.ok and reason in check.describe()
