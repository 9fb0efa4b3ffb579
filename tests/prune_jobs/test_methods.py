"""The pruning rules on synthetic layers: formulas, the classic reconstruction experiment, OBS properties."""

import pytest
import torch

from prune_jobs.masks import NMPattern, SparsityTarget, nm_check, row_sparsities, unstructured_mask
from prune_jobs.methods import METHODS, get_method
from prune_jobs.methods.sparsegpt import obs_prune
from prune_jobs.stats import LinearStats, relative_output_error
from tests.prune_jobs.helpers import RoundToNearest, correlated_inputs, output_error

HALF = SparsityTarget.of(None, 0.5)
TWO_FOUR = SparsityTarget.of(NMPattern(2, 4), None)


def stats_of(x: torch.Tensor, full_hessian: bool = True) -> LinearStats:
    stats = LinearStats(x.shape[1], full_hessian=full_hessian)
    for chunk in x.split(1000):
        stats.add(chunk)
    return stats


def test_wanda_matches_the_formula_computed_independently():
    torch.manual_seed(1)
    w = torch.randn(6, 8)
    x = torch.randn(3, 5, 8) * torch.arange(1, 9)  # [batch, seq, in]: features of different scales
    stats = LinearStats(8, full_hessian=False)
    stats.add(x[:2])
    stats.add(x[2:])
    pruned = METHODS["wanda"].prune(w, stats, HALF, None)
    # independent: score_ij = |w_ij| * sqrt(sum over all tokens of x_j^2); drop the 4 lowest of each row
    norms = [sum(float(v) ** 2 for v in x[..., j].flatten()) ** 0.5 for j in range(8)]
    for i in range(6):
        score = [abs(float(w[i, j])) * norms[j] for j in range(8)]
        dropped = sorted(range(8), key=lambda j: score[j])[:4]
        for j in range(8):
            assert float(pruned[i, j]) == (0.0 if j in dropped else float(w[i, j]))


def test_reconstruction_experiment_on_a_random_layer():
    """At 50% on a random 256x256 layer with white inputs: magnitude ≈ 0.27, random ≈ 0.70, 2:4 ≈ 0.36."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(256, 256, generator=g)
    x = torch.randn(4096, 256, generator=g)
    stats = stats_of(x)
    magnitude = output_error(x, w, METHODS["magnitude"].prune(w, stats, HALF, None))
    random_keep = unstructured_mask(torch.rand(256, 256, generator=g), 0.5)
    random = output_error(x, w, w * random_keep)
    magnitude_24 = output_error(x, w, METHODS["magnitude"].prune(w, stats, TWO_FOUR, None))
    sparsegpt = output_error(x, w, METHODS["sparsegpt"].prune(w, stats, HALF, None))
    assert magnitude == pytest.approx(0.27, abs=0.02)
    assert random == pytest.approx(0.70, abs=0.02)
    assert magnitude_24 == pytest.approx(0.36, abs=0.02)
    assert sparsegpt < magnitude


@pytest.mark.parametrize("target", [HALF, TWO_FOUR], ids=["50%", "2:4"])
def test_sparsegpt_beats_wanda_beats_magnitude_on_correlated_inputs(target):
    torch.manual_seed(0)
    w = torch.randn(256, 256)
    x = correlated_inputs(4096, 256)
    stats = stats_of(x)
    errors = {name: output_error(x, w, m.prune(w, stats, target, None)) for name, m in METHODS.items()}
    assert errors["sparsegpt"] < errors["wanda"] < errors["magnitude"], errors


def test_sparsegpt_masks_are_valid():
    torch.manual_seed(0)
    w = torch.randn(96, 256)
    stats = stats_of(correlated_inputs(2048, 256))
    nm = METHODS["sparsegpt"].prune(w, stats, SparsityTarget.of(NMPattern(2, 4), None), None)
    assert nm_check(nm, NMPattern(2, 4)).valid and (nm == 0).float().mean() == 0.5
    one_four = METHODS["sparsegpt"].prune(w, stats, SparsityTarget.of(NMPattern(1, 4), None), None)
    assert nm_check(one_four, NMPattern(1, 4)).valid and (one_four == 0).float().mean() == 0.75
    unstructured = METHODS["sparsegpt"].prune(w, stats, SparsityTarget.of(None, 0.6), None)
    assert (unstructured == 0).float().mean() == pytest.approx(0.6, abs=1e-3)


def test_obs_with_a_fixed_mask_keeps_the_mask_and_lowers_the_error():
    torch.manual_seed(0)
    w = torch.randn(128, 256)
    x = correlated_inputs(4096, 256)
    stats = stats_of(x)
    keep = unstructured_mask(w.abs(), 0.5)
    compensated = obs_prune(w, stats.hessian(), keep_mask=keep)
    assert torch.equal(compensated != 0, keep)
    assert output_error(x, w, compensated) < 0.8 * output_error(x, w, w * keep)


def test_relative_output_error_from_the_hessian_equals_the_direct_one():
    torch.manual_seed(0)
    w = torch.randn(64, 128)
    x = correlated_inputs(3000, 128)
    pruned = METHODS["wanda"].prune(w, stats_of(x, False), HALF, None)
    assert relative_output_error(w, pruned, stats_of(x).hessian()) == pytest.approx(
        output_error(x, w, pruned), rel=1e-3
    )
    sampled = relative_output_error(w, pruned, stats_of(x, full_hessian=False).hessian())
    assert sampled == pytest.approx(output_error(x, w, pruned), rel=0.15)


def test_hessian_does_not_depend_on_the_order_batches_arrive_in():
    """Batch threads add their statistics in timing order; identical runs must give identical Hessians
    (float32 accumulation did not: SparseGPT 2:4 masks differed between two runs of the same job)."""
    torch.manual_seed(0)
    batches = [torch.randn(512, 96) * scale for scale in (1e-3, 1.0, 30.0, 0.2, 5.0, 1e2)]
    forward, backward = LinearStats(96, full_hessian=True), LinearStats(96, full_hessian=True)
    for x in batches:
        forward.add(x)
    for x in reversed(batches):
        backward.add(x)
    assert forward.hessian().dtype == torch.float32
    assert torch.equal(forward.hessian(), backward.hessian())
    assert torch.equal(forward.input_norms(), backward.input_norms())


@pytest.mark.parametrize("group_size", [None, 32])
def test_gptq_quantization_in_the_obs_pass(group_size):
    torch.manual_seed(0)
    w = torch.randn(64, 256)
    x = correlated_inputs(4096, 256)
    h = stats_of(x).hessian()
    quantizer = RoundToNearest(bits=4, group_size=group_size)
    gptq = obs_prune(w, h, quantizer=quantizer)
    params = quantizer.params()
    n_groups = 1 if group_size is None else 256 // group_size
    assert quantizer.groups_started == n_groups and params.scales.shape == (64, n_groups)
    # every weight lies on its group's grid
    scales = params.scales.repeat_interleave(256 // n_groups, dim=1)
    codes = gptq / scales
    assert torch.allclose(codes, codes.round(), atol=1e-4) and codes.abs().max() <= 8
    # error compensation beats plain round-to-nearest on the same grid family
    rtn = RoundToNearest(bits=4, group_size=group_size)
    plain = torch.cat([_rtn_group(rtn, g) for g in w.split(group_size or 256, dim=1)], dim=1)
    assert output_error(x, w, gptq) < 0.9 * output_error(x, w, plain)


def _rtn_group(q: RoundToNearest, group: torch.Tensor) -> torch.Tensor:
    q.start_group(group)
    return torch.stack([q.quantize(c) for c in group.T], dim=1)


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_pruning_and_quantization_in_one_pass(method):
    torch.manual_seed(0)
    w = torch.randn(64, 256)
    x = correlated_inputs(4096, 256)
    quantizer = RoundToNearest(bits=8, group_size=64)
    out = METHODS[method].prune(w, stats_of(x), TWO_FOUR, quantizer)
    assert nm_check(out, NMPattern(2, 4)).valid and float((out == 0).float().mean()) >= 0.5
    scales = quantizer.params().scales.repeat_interleave(64, dim=1)
    assert torch.allclose(out / scales, (out / scales).round(), atol=1e-4)
    assert output_error(x, w, out) < 0.6


def test_dead_inputs_and_unknown_method():
    w = torch.randn(16, 32)
    x = torch.randn(500, 32)
    x[:, 5] = 0
    out = METHODS["sparsegpt"].prune(w, stats_of(x), HALF, None)
    assert (out[:, 5] == 0).all() and torch.isfinite(out).all()
    assert torch.allclose(row_sparsities(out), torch.full((16,), 0.5), atol=0.2)
    with pytest.raises(ValueError, match="magnitude, wanda, sparsegpt"):
        get_method("obd")


def plain_sparsegpt(w: torch.Tensor, h: torch.Tensor, n: int, m: int, damp: float = 0.01) -> torch.Tensor:
    """SparseGPT N:M written as plainly as possible: no blocks, no lazy updates, float64."""
    w = w.double().clone()
    h = h.double().clone()
    h += damp * h.diagonal().mean() * torch.eye(h.shape[0], dtype=torch.float64)
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    prune = torch.zeros_like(w, dtype=torch.bool)
    for i in range(w.shape[1]):
        if i % m == 0:
            saliency = w[:, i : i + m] ** 2 / u.diagonal()[i : i + m] ** 2
            prune[:, i : i + m].scatter_(1, saliency.topk(m - n, dim=1, largest=False).indices, True)
        err = torch.where(prune[:, i], w[:, i], 0.0) / u[i, i]
        w[:, i:] -= torch.outer(err, u[i, i:])
        w[:, i] = torch.where(prune[:, i], 0.0, w[:, i])
    return w.float()


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4)])
def test_obs_equals_the_plain_algorithm(n, m):
    """Blocks of 128 with lazy updates are an exact rearrangement of the column-by-column algorithm."""
    torch.manual_seed(0)
    w = torch.randn(48, 384)
    h = stats_of(correlated_inputs(4096, 384)).hessian()
    fast = obs_prune(w, h, target=SparsityTarget.of(NMPattern(n, m), None))
    plain = plain_sparsegpt(w, h, n, m)
    assert torch.equal(fast == 0, plain == 0)
    assert torch.allclose(fast, plain, rtol=1e-3, atol=1e-3)


def test_statistics_without_input_norms_keep_the_hessian_and_refuse_norms():
    torch.manual_seed(0)
    x = correlated_inputs(1024, 32)
    with_norms, without = (
        LinearStats(32, full_hessian=True),
        LinearStats(32, full_hessian=True, input_norms=False),
    )
    with_norms.add(x)
    without.add(x)
    assert torch.equal(with_norms.hessian(), without.hessian())
    with pytest.raises(RuntimeError, match="without input norms"):
        without.input_norms()
