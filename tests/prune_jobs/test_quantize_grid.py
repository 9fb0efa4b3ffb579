"""Quantization grids, round-to-nearest, the column quantizer the OBS pass drives, group-size resolution."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from prune_jobs.errors import PruneJobError
from prune_jobs.quant_api import QuantSpec
from prune_jobs.quantize import make_column_quantizer, quantize_rtn, resolve_quant_spec

INT8 = QuantSpec("int8", None)
W4_G64 = QuantSpec("w4a16", 64)


def _weight(out: int = 48, inp: int = 256, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out, inp, generator=g) * 0.05
    w[3] += 0.2  # a skewed row: asymmetric grids must follow it
    w[5, :64] = 0.0  # an all-zero group
    return w


def _prune_2_4(w: torch.Tensor) -> torch.Tensor:
    groups = w.reshape(w.shape[0], -1, 4)
    drop = groups.abs().argsort(dim=-1)[..., :2]
    return groups.scatter(-1, drop, 0.0).reshape(w.shape)


def test_int8_grid_is_symmetric_per_channel_and_within_half_a_step():
    w = _weight()
    deq, params = quantize_rtn(w, INT8)
    assert params.scales.shape == (48, 1) and params.zero_points is None and params.group_size is None
    scale = params.scales
    q = deq / scale
    assert torch.allclose(q, q.round(), atol=1e-4), "values off the integer grid"
    assert q.round().min() >= -128 and q.round().max() <= 127
    absmax = w.abs().amax(dim=1, keepdim=True)
    nonzero = absmax.squeeze(1) > 0
    assert torch.allclose(scale[nonzero], absmax[nonzero] / 127.5)
    assert ((deq - w).abs() <= scale / 2 + 1e-7).all()


def test_w4_group_parameters_values_on_grid_and_error_within_half_a_step():
    w = _weight()
    deq, params = quantize_rtn(w, W4_G64)
    assert params.scales.shape == (48, 4) and params.zero_points.shape == (48, 4) and params.group_size == 64
    assert params.zero_points.dtype == torch.int32
    assert params.zero_points.min() >= -8 and params.zero_points.max() <= 7
    scale = params.scales.repeat_interleave(64, dim=1)
    zp = params.zero_points.repeat_interleave(64, dim=1).float()
    q = deq / scale + zp
    assert torch.allclose(q, q.round(), atol=1e-4)
    assert q.round().min() >= -8 and q.round().max() <= 7
    assert ((deq - w).abs() <= scale / 2 + 1e-7).all()
    # Each group uses the full 16 levels of its [min(w, 0), max(w, 0)] range.
    groups = w.reshape(48, 4, 64)
    span = groups.amax(-1).clamp(min=0) - groups.amin(-1).clamp(max=0)
    fitted = span > 0
    assert torch.allclose(params.scales[fitted], span[fitted] / 15)


def test_rtn_matches_an_independent_formula():
    """The textbook formulas, evaluated in numpy float32 (the grid's extremes are exact .5 ties, so the
    arithmetic precision has to match for the tie-breaks to agree)."""
    w = _weight(out=8, inp=128, seed=1)
    deq8, _ = quantize_rtn(w, INT8)
    deq4, _ = quantize_rtn(w, QuantSpec("w4a16", 32))
    x = w.numpy().astype(np.float32)
    s8 = np.abs(x).max(axis=1, keepdims=True) / np.float32(127.5)
    expect8 = np.clip(np.round(x / s8), -128, 127) * s8
    np.testing.assert_array_equal(deq8.numpy(), expect8)
    g = x.reshape(8, 4, 32)
    lo = np.minimum(g.min(axis=2, keepdims=True), 0)
    hi = np.maximum(g.max(axis=2, keepdims=True), 0)
    s4 = (hi - lo) / np.float32(15)
    s4 = np.where(s4 > 0, s4, np.float32(1))  # all-zero group: any scale stores it exactly
    zp = np.clip(np.round(np.float32(-8) - lo / s4), -8, 7)
    expect4 = ((np.clip(np.round(g / s4 + zp), -8, 7) - zp) * s4).reshape(8, 128)
    np.testing.assert_allclose(deq4.numpy(), expect4, rtol=0, atol=1e-7)


@pytest.mark.parametrize("spec", [INT8, W4_G64], ids=["int8", "w4a16"])
def test_pruned_zeros_stay_exactly_zero(spec):
    w = _prune_2_4(_weight())
    deq, _ = quantize_rtn(w, spec)
    assert (deq[w == 0] == 0).all()
    assert ((deq.reshape(48, -1, 4) == 0).sum(-1) >= 2).all()


@pytest.mark.parametrize("spec", [INT8, W4_G64], ids=["int8", "w4a16"])
def test_column_quantizer_without_compensation_equals_rtn(spec):
    """Driven column by column the way the OBS pass does, with nothing to compensate, it is RTN."""
    w = _weight()
    quantizer = make_column_quantizer(spec, w)
    group = quantizer.group_size or w.shape[1]
    out = torch.empty_like(w)
    for c in range(w.shape[1]):
        if c % group == 0:
            quantizer.start_group(w[:, c:c + group])
        out[:, c] = quantizer.quantize(w[:, c])
    deq, params = quantize_rtn(w, spec)
    assert torch.equal(out, deq)
    got = quantizer.params()
    assert torch.equal(got.scales, params.scales)
    assert (got.zero_points is None) == (params.zero_points is None)
    if got.zero_points is not None:
        assert torch.equal(got.zero_points, params.zero_points)


def test_column_quantizer_fits_each_group_on_the_weights_it_is_given():
    """GPTQ's lazy grid: a group's grid follows the compensated weights at the time the pass reaches it."""
    w = _weight()
    quantizer = make_column_quantizer(W4_G64, w)
    block = w[:, 64:128]
    for g in range(4):
        quantizer.start_group(block * (g + 1))
    scales = quantizer.params().scales
    assert torch.allclose(scales[:, 3], 4 * scales[:, 0], rtol=1e-5)


def test_column_quantizer_misuse_is_caught():
    w = _weight()
    quantizer = make_column_quantizer(W4_G64, w)
    with pytest.raises(RuntimeError):
        quantizer.quantize(w[:, 0])
    with pytest.raises(RuntimeError):
        quantizer.params()


def test_group_size_that_does_not_divide_is_a_clear_error():
    with pytest.raises(PruneJobError, match=r"group size 128 does not divide .*in_features=576.*64, 32"):
        make_column_quantizer(QuantSpec("w4a16", 128), torch.zeros(8, 576))
    with pytest.raises(PruneJobError, match="per output channel"):
        make_column_quantizer(QuantSpec("int8", 64), torch.zeros(8, 576))
    with pytest.raises(PruneJobError, match="unknown quantization scheme 'fp8'"):
        make_column_quantizer(QuantSpec("fp8", None), torch.zeros(8, 576))


def test_auto_group_size_picks_the_largest_that_divides_every_layer():
    smollm2 = {"model.layers.0.self_attn.q_proj": 576, "model.layers.0.mlp.down_proj": 1536}
    tiny = {"model.layers.0.self_attn.q_proj": 256, "model.layers.0.mlp.down_proj": 512}
    assert resolve_quant_spec("w4a16", "auto", smollm2) == QuantSpec("w4a16", 64)
    assert resolve_quant_spec("w4a16", "auto", tiny) == QuantSpec("w4a16", 128)
    assert resolve_quant_spec("int8", "auto", smollm2) == QuantSpec("int8", None)
    assert resolve_quant_spec("w4a16", 32, smollm2) == QuantSpec("w4a16", 32)


def test_explicit_group_size_is_checked_against_every_layer():
    smollm2 = {"model.layers.0.mlp.down_proj": 1536, "model.layers.0.self_attn.q_proj": 576}
    with pytest.raises(PruneJobError) as err:
        resolve_quant_spec("w4a16", 128, smollm2)
    message = str(err.value)
    assert "model.layers.0.self_attn.q_proj in_features=576" in message
    assert "sizes that divide every quantized layer: 64, 32, 16" in message and "\n" not in message
    with pytest.raises(PruneJobError, match="no group size among 128/64/32/16 divides"):
        resolve_quant_spec("w4a16", "auto", {"odd": 100})
    with pytest.raises(PruneJobError, match="no layers selected"):
        resolve_quant_spec("w4a16", "auto", {})


def test_rtn_error_shrinks_with_finer_groups():
    w = _weight(out=64, inp=512, seed=3)
    errors = [(quantize_rtn(w, QuantSpec("w4a16", g))[0] - w).norm().item() for g in (128, 64, 32)]
    assert errors[0] > errors[1] > errors[2]
    assert not any(math.isnan(e) for e in errors)
