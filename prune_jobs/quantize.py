"""Quantization entry points the pipeline calls (the implementation lives in prune_jobs/quant/).

- `resolve_quant_spec(scheme, group_size, in_features)`: the one spec for the whole model (`auto` group size).
- `make_column_quantizer(spec, weight)`: the ColumnQuantizer the OBS/GPTQ pass drives column by column.
- `quantize_rtn(weight, spec)`: round-to-nearest, for the no-calibration path and for tests.
- `save_quantized_checkpoint(model, params, spec, out_dir, sparsity_structure)`: compressed-tensors writer.
"""

from prune_jobs.quant.checkpoint import build_quantization_config, save_quantized_checkpoint
from prune_jobs.quant.column import make_column_quantizer, quantize_rtn
from prune_jobs.quant.group_size import resolve_quant_spec
from prune_jobs.quant.schemes import SCHEMES

__all__ = [
    "SCHEMES",
    "build_quantization_config",
    "make_column_quantizer",
    "quantize_rtn",
    "resolve_quant_spec",
    "save_quantized_checkpoint",
]
