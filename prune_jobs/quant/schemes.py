"""What each `--quant` scheme means: weight grid, granularity, activations, compressed-tensors format."""

from __future__ import annotations

from dataclasses import dataclass

from prune_jobs.errors import PruneJobError
from prune_jobs.quant.grid import IntGrid
from prune_jobs.quant_api import QuantScheme, QuantSpec


@dataclass(frozen=True)
class SchemeInfo:
    grid: IntGrid
    grouped: bool  # weights in groups along the input dimension (else one scale per output channel)
    default_group_size: int | None
    dynamic_int8_activations: bool  # W8A8: activations quantized per token at run time by the engine
    ct_format: str  # compressed-tensors "format" of the saved weights


SCHEMES: dict[str, SchemeInfo] = {
    # W8A8: vLLM's int8 path accepts only symmetric weights (compressed_tensors.py `_is_dynamic_token_w8a8`).
    "int8": SchemeInfo(
        grid=IntGrid(bits=8, symmetric=True),
        grouped=False,
        default_group_size=None,
        dynamic_int8_activations=True,
        ct_format="int-quantized",
    ),
    # W4A16: vLLM-CPU's CPUWNA16 kernel takes both uint4b8 (symmetric) and uint4 (with zero-points); the
    # asymmetric grid uses all 16 levels on skewed groups, which is why it is chosen (docs/quantization.md).
    "w4a16": SchemeInfo(
        grid=IntGrid(bits=4, symmetric=False),
        grouped=True,
        default_group_size=128,
        dynamic_int8_activations=False,
        ct_format="pack-quantized",
    ),
}


def scheme_info(scheme: QuantScheme | str) -> SchemeInfo:
    try:
        return SCHEMES[scheme]
    except KeyError:
        choices = ", ".join(SCHEMES)
        raise PruneJobError(f"unknown quantization scheme {scheme!r}; choose one of {choices}") from None


def check_spec(spec: QuantSpec, in_features: int, layer: str = "weight") -> None:
    """Reject a spec this layer cannot use, with a message naming the layer and what would work."""
    info = scheme_info(spec.scheme)
    if spec.group_size is None:
        return
    if not info.grouped:
        raise PruneJobError(f"--quant {spec.scheme} uses one scale per output channel; drop the group size")
    if spec.group_size <= 0 or spec.group_size % 2:
        raise PruneJobError(f"quantization group size must be a positive even number, got {spec.group_size}")
    if in_features % spec.group_size:
        working = [g for g in (128, 64, 32, 16) if in_features % g == 0]
        sizes = ", ".join(map(str, working)) or "none of 128/64/32/16"
        raise PruneJobError(
            f"quantization group size {spec.group_size} does not divide {layer} in_features={in_features}; "
            f"sizes that would work: {sizes} (or omit --quant-group-size)"
        )
