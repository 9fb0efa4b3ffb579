"""The plugin's linear method in-process, without an engine: error naming for fused layers, and the
wiring of the accelerated path (buffers, reshape, bias, the dispatch op) with the sparse kernels replaced
by the dense choice, since those run only on a GPU."""

import pytest
import torch

from sparse24.dispatch import Candidate, DeviceKey, DispatchTable, select
from sparse24.marker import parse_marker
from sparse24.pattern import prune_24

vllm_plugin = pytest.importorskip("sparse24.vllm_plugin")
QKV = "model.layers.0.self_attn.qkv_proj"
SHARDS = [f"model.layers.0.self_attn.{p}_proj" for p in "qkv"]
MARKER = parse_marker({"quant_method": "sparsefleet_24", "pattern": "2:4"})


def make_layer(dtype=torch.float32):
    method = vllm_plugin.Sparse24LinearMethod(vllm_plugin.Sparse24Config(MARKER), QKV, SHARDS)
    layer = torch.nn.Module()
    # What create_weights leaves behind (its vLLM parameters need a tensor-parallel group, which the
    # vLLM-CPU test has): the fused weight and the rows of each part.
    layer.weight = torch.nn.Parameter(prune_24(torch.randn(64, 64)).to(dtype), requires_grad=False)
    layer.sp24_shard_rows = [32, 16, 16]
    return method, layer


def test_violation_names_the_checkpoint_shard_and_its_row():
    method, layer = make_layer()
    layer.weight.data[32 + 5, 8:12] = 1.0  # k_proj is rows 32..47 of the fused qkv weight
    with pytest.raises(vllm_plugin.Sparse24PatternError) as info:
        method.process_weights_after_loading(layer)
    message = str(info.value)
    assert message.startswith("model.layers.0.self_attn.k_proj: weight is not 2:4 sparse")
    assert "first at row 5, input columns 8-11" in message and "\n" not in message


def test_accelerated_path_wiring(monkeypatch):
    from sparse24 import kernel

    method, layer = make_layer(torch.bfloat16)
    weight = layer.weight.data.clone()
    device = DeviceKey("gpu", "9.0", "t", "c", "s", "k")
    # mma_sp for decode buckets, dense beyond: both formats kept, the dense bucket is what runs on CPU
    choices = select(
        {
            1: [Candidate("dense", 9.0), Candidate("mma_sp", 5.0, 2)],
            32: [Candidate("dense", 9.0), Candidate("mma_sp", 5.0, 1)],
            64: [Candidate("dense", 10.0), Candidate("cusparselt", 30.0)],
        }
    )
    table = DispatchTable(64, 64, "bfloat16", device, choices)
    compiled = []
    monkeypatch.setattr(method.config, "table_for", lambda w: table)
    monkeypatch.setattr(method, "_accelerated", lambda w: True)
    monkeypatch.setattr(kernel, "precompile", lambda dtype, m, ntb, dev=None: compiled.append((m, ntb)))
    method.process_weights_after_loading(layer)

    assert sorted(set(compiled)) == [(8, 1), (8, 2), (16, 1), (32, 1)]  # every token-tile count per bucket
    assert layer.sp24_mma_values.numel() > 0 and layer.sp24_cslt.numel() == 0
    assert torch.equal(layer.sp24_dense, weight) and layer.weight.numel() == weight.numel()
    x, bias = torch.randn(4, 10, 64).to(torch.bfloat16), torch.randn(64).to(torch.bfloat16)
    y = method.apply(layer, x, bias)  # 40 tokens -> the dense bucket
    torch.testing.assert_close(y, torch.nn.functional.linear(x, weight) + bias)


def test_dense_copy_is_released_when_no_bucket_uses_it(monkeypatch):
    from sparse24 import kernel

    method, layer = make_layer(torch.bfloat16)
    table = DispatchTable(
        64,
        64,
        "bfloat16",
        DeviceKey("gpu", "9.0", "t", "c", "s", "k"),
        select({1: [Candidate("dense", 9.0), Candidate("mma_sp", 5.0, 1)]}),
    )
    monkeypatch.setattr(method.config, "table_for", lambda w: table)
    monkeypatch.setattr(method, "_accelerated", lambda w: True)
    monkeypatch.setattr(kernel, "precompile", lambda *args: None)
    method.process_weights_after_loading(layer)
    assert layer.weight.numel() == 0 and layer.sp24_dense.numel() == 0
    # 56.25% of the bytes of the dense weight padded to K=128
    assert layer.sp24_mma_values.numel() * 2 + layer.sp24_mma_meta.numel() * 4 == 0.5625 * 64 * 128 * 2
