"""The compressed-tensors writer: config, tensor layout, and round trips through independent readers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from prune_jobs.errors import PruneJobError
from prune_jobs.quant.served import load_as_served
from prune_jobs.quant_api import QuantParams, QuantSpec
from prune_jobs.quantize import quantize_rtn, save_quantized_checkpoint

SPECS = {"int8": QuantSpec("int8", None), "w4a16": QuantSpec("w4a16", 64)}


def _load(model_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


def _decoder_linears(model) -> dict[str, torch.nn.Linear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n}


def _prune_2_4_and_quantize(model, spec: QuantSpec) -> dict[str, QuantParams]:
    params = {}
    for name, linear in _decoder_linears(model).items():
        groups = linear.weight.data.reshape(linear.out_features, -1, 4)
        drop = groups.abs().argsort(dim=-1)[..., :2]
        pruned = groups.scatter(-1, drop, 0.0).reshape(linear.weight.shape)
        linear.weight.data, params[name] = quantize_rtn(pruned, spec)
    return params


@pytest.fixture(scope="module", params=list(SPECS))
def saved(request, tiny_llama_dir, tmp_path_factory):
    """(scheme, dequantized model as handed to the writer, checkpoint dir) for a 2:4-pruned tiny Llama."""
    spec = SPECS[request.param]
    model = _load(tiny_llama_dir)
    params = _prune_2_4_and_quantize(model, spec)
    out = tmp_path_factory.mktemp(f"ckpt-{request.param}")
    save_quantized_checkpoint(model, params, spec, out, sparsity_structure="2:4")
    return request.param, model, out


def test_config_declares_the_scheme_in_compressed_tensors_terms(saved):
    scheme, _, out = saved
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "compressed-tensors" and qc["quantization_status"] == "compressed"
    group = qc["config_groups"]["group_0"]
    assert group["targets"] == ["Linear"]
    assert qc["ignore"] == ["lm_head"]  # every decoder linear is quantized, the (tied) head is not
    weights, acts = group["weights"], group["input_activations"]
    if scheme == "int8":
        assert qc["format"] == "int-quantized"
        assert (weights["num_bits"], weights["strategy"], weights["symmetric"]) == (8, "channel", True)
        assert (acts["num_bits"], acts["strategy"], acts["dynamic"]) == (8, "token", True)
        assert acts["symmetric"]
    else:
        assert qc["format"] == "pack-quantized" and acts is None
        assert (weights["num_bits"], weights["strategy"], weights["group_size"]) == (4, "group", 64)
        assert weights["symmetric"] is False
    sparsity = qc["sparsity_config"]
    assert sparsity["sparsity_structure"] == "2:4" and sparsity["format"] == "dense"
    assert sparsity["global_sparsity"] >= 0.5 and sparsity["targets"] == []
    assert (out / "generation_config.json").is_file()


def test_tensors_are_stored_in_the_scheme_layout(saved):
    scheme, model, out = saved
    files = list(out.glob("*.safetensors"))
    assert len(files) == 1
    with safe_open(files[0], "pt") as f:
        keys = set(f.keys())
        q = "model.layers.0.self_attn.q_proj"
        assert f"{q}.weight_scale" in keys and "lm_head.weight" not in keys  # tied to the embeddings
        if scheme == "int8":
            assert f.get_tensor(f"{q}.weight").dtype == torch.int8
            assert f.get_tensor(f"{q}.weight_scale").shape == (256, 1)
        else:
            assert f"{q}.weight" not in keys
            assert f.get_tensor(f"{q}.weight_packed").shape == (256, 256 // 8)
            assert f.get_tensor(f"{q}.weight_packed").dtype == torch.int32
            assert f.get_tensor(f"{q}.weight_scale").shape == (256, 4)
            assert f.get_tensor(f"{q}.weight_zero_point").shape == (256 // 8, 4)
            assert f.get_tensor(f"{q}.weight_shape").tolist() == [256, 256]
        assert f.get_tensor("model.embed_tokens.weight").dtype == torch.float32


def test_independent_unpacking_gives_back_the_dequantized_weights(saved):
    """Reads the stored integers with plain bit arithmetic written from the format description."""
    scheme, model, out = saved
    linears = _decoder_linears(model)
    with safe_open(next(out.glob("*.safetensors")), "pt") as f:
        for name, linear in linears.items():
            scale = f.get_tensor(f"{name}.weight_scale")
            if scheme == "int8":
                q = f.get_tensor(f"{name}.weight").to(torch.int64)
                zp = torch.zeros_like(scale, dtype=torch.int64)
            else:
                q = _unpack_nibbles(f.get_tensor(f"{name}.weight_packed")) - 8
                zp = _unpack_nibbles(f.get_tensor(f"{name}.weight_zero_point").t()).t()[: q.shape[0]] - 8
            group = q.shape[1] // scale.shape[1]
            codes = q - zp.repeat_interleave(group, dim=1)
            weight = codes.float() * scale.repeat_interleave(group, dim=1)
            assert torch.equal(weight, linear.weight.data), name


def _unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    words = packed.to(torch.int64) & 0xFFFFFFFF
    return torch.stack([(words >> (4 * i)) & 0xF for i in range(8)], dim=-1).reshape(packed.shape[0], -1)


def test_transformers_reload_gives_the_same_weights_and_keeps_the_2_4_zeros(saved):
    _, model, out = saved
    reloaded = load_as_served(out)
    got = dict(reloaded.named_parameters())
    for name, linear in _decoder_linears(model).items():
        weight = got[f"{name}.weight"].data
        assert torch.equal(weight, linear.weight.data), name
        groups = weight.reshape(weight.shape[0], -1, 4)
        assert ((groups == 0).sum(-1) >= 2).all(), f"{name} lost its 2:4 structure"
    assert torch.equal(got["model.embed_tokens.weight"], model.model.embed_tokens.weight)
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()


def test_unquantized_linears_are_listed_in_ignore(tiny_llama_dir, tmp_path):
    model = _load(tiny_llama_dir)
    spec = SPECS["w4a16"]
    keep = {n: lin for n, lin in _decoder_linears(model).items() if ".mlp." in n}
    params = {}
    for name, linear in keep.items():
        linear.weight.data, params[name] = quantize_rtn(linear.weight.data, spec)
    save_quantized_checkpoint(model, params, spec, tmp_path, sparsity_structure=None)
    qc = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    assert "model.layers.1.self_attn.q_proj" in qc["ignore"] and "lm_head" in qc["ignore"]
    assert not any(".mlp." in n for n in qc["ignore"])
    assert qc["sparsity_config"] == {}
    with safe_open(next(tmp_path.glob("*.safetensors")), "pt") as f:
        assert f.get_tensor("model.layers.1.self_attn.q_proj.weight").dtype == torch.float32


def test_half_quantized_fused_projection_is_refused(tiny_llama_dir, tmp_path):
    model = _load(tiny_llama_dir)
    spec = SPECS["int8"]
    q_proj = model.model.layers[0].self_attn.q_proj
    q_proj.weight.data, params = quantize_rtn(q_proj.weight.data, spec)
    with pytest.raises(PruneJobError, match=r"vLLM fuses .*q_proj.*k_proj.*v_proj.*quantize all or none"):
        save_quantized_checkpoint(
            model, {"model.layers.0.self_attn.q_proj": params}, spec, tmp_path, sparsity_structure=None
        )


def test_weights_off_their_grid_are_never_saved(tiny_llama_dir, tmp_path):
    model = _load(tiny_llama_dir)
    spec = SPECS["w4a16"]
    params = {}
    for name, linear in _decoder_linears(model).items():
        _, params[name] = quantize_rtn(linear.weight.data, spec)  # weights left unquantized
    with pytest.raises(ValueError, match="not on their quantization grid"):
        save_quantized_checkpoint(model, params, spec, tmp_path, sparsity_structure=None)
