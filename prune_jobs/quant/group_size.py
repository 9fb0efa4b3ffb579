"""Choosing the W4A16 group size for a whole model before any layer is quantized.

Every targeted layer must use the same group size (one config group in the checkpoint), and it has to divide
each layer's in_features: SmolLM2's hidden size 576 is a multiple of 64 but not of 128, so the textbook
default of 128 cannot be used there. `auto` therefore picks the largest of 128 / 64 / 32 / 16 that divides
every targeted layer; an explicit size that does not fit is refused up front, naming the layer and what
would work, rather than failing after minutes of calibration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from prune_jobs.errors import PruneJobError
from prune_jobs.quant.schemes import check_spec, scheme_info
from prune_jobs.quant_api import QuantScheme, QuantSpec

AUTO_CANDIDATES = (128, 64, 32, 16)

GroupSizeRequest = int | Literal["auto"]


def resolve_quant_spec(
    scheme: QuantScheme | str, group_size: GroupSizeRequest, in_features: Mapping[str, int]
) -> QuantSpec:
    """The spec to quantize every layer in `in_features` (module name → in_features) with.

    int8 is per output channel whatever `auto` means; w4a16 with `auto` takes the largest of 128/64/32/16
    that divides every layer. An explicit size is checked against every layer.
    """
    info = scheme_info(scheme)
    if not in_features:
        raise PruneJobError(f"--quant {scheme}: no layers selected to quantize")
    if group_size == "auto":
        if not info.grouped:
            return QuantSpec(scheme=scheme, group_size=None)
        for candidate in AUTO_CANDIDATES:
            if all(n % candidate == 0 for n in in_features.values()):
                return QuantSpec(scheme=scheme, group_size=candidate)
        odd = {name: n for name, n in in_features.items() if n % AUTO_CANDIDATES[-1]}
        name, n = next(iter(odd.items()))
        raise PruneJobError(
            f"--quant {scheme}: no group size among {'/'.join(map(str, AUTO_CANDIDATES))} divides "
            f"{name} in_features={n}; pass --quant-group-size explicitly or --exclude that layer"
        )
    spec = QuantSpec(scheme=scheme, group_size=group_size)
    misfits = {name: n for name, n in in_features.items() if info.grouped and n % group_size}
    if misfits:
        name, n = next(iter(misfits.items()))
        working = [g for g in (256, *AUTO_CANDIDATES) if all(m % g == 0 for m in in_features.values())]
        sizes = ", ".join(map(str, working)) or "none"
        raise PruneJobError(
            f"--quant-group-size {group_size} does not divide {name} in_features={n}"
            f"{f' (and {len(misfits) - 1} more layers)' if len(misfits) > 1 else ''}; "
            f"sizes that divide every quantized layer: {sizes} (or omit --quant-group-size)"
        )
    for name, n in in_features.items():
        check_spec(spec, n, layer=name)
    return spec
