"""vLLM plugin: serve checkpoints marked `"quant_method": "sparsefleet_24"` with 2:4 kernels where they pay.

Activated by the entry point `sparse24 = sparse24:register` (group `vllm.general_plugins`), which vLLM calls
in every process it starts. The config class lives at module level because vLLM pickles configs into the
engine process. What each linear layer does:

* load — the dense, zero-filled weight is loaded as vLLM would load it (same parameters, same loaders);
* `process_weights_after_loading` — the 2:4 pattern is verified (a clear error naming the checkpoint module
  if it is violated); on CUDA sm80+ with fp16/bf16 the layer's shape gets a measured dispatch table
  (cached on disk) and only the weight formats that table uses are kept; elsewhere vLLM's own dense path
  is prepared unchanged;
* `apply` — on the accelerated path one opaque op (`sparse24.ops`) picks the kernel for the batch's token
  bucket without any host synchronisation; otherwise the dense method runs, so on CPU the tokens are the
  ones the same checkpoint without the marker produces.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from vllm.model_executor.layers.linear import (
    LinearBase,
    LinearMethodBase,
    UnquantizedLinearMethod,
    register_weight_loader_v2_supported_method,
)
from vllm.model_executor.layers.quantization import register_quantization_config
from vllm.model_executor.layers.quantization.base_config import QuantizationConfig, QuantizeMethodBase
from vllm.platforms import current_platform

from sparse24.dispatch import DispatchTable
from sparse24.marker import QUANT_METHOD, Sparse24Marker, coverage, parse_marker, shard_names
from sparse24.pattern import check_24
from sparse24.settings import Sparse24Settings

log = logging.getLogger("sparse24")


class Sparse24PatternError(ValueError):
    """A weight marked 2:4 is not 2:4; the message names the checkpoint module and how to fix it."""


class Sparse24Config(QuantizationConfig):
    """`quantization_config` of a 2:4 checkpoint written by `prune-jobs run --pattern 2:4`."""

    def __init__(self, marker: Sparse24Marker) -> None:
        super().__init__()
        self.marker = marker
        self.settings = Sparse24Settings.from_env()
        self._tables: dict[tuple[int, int, str], DispatchTable] = {}  # one measurement per shape per model

    def get_name(self) -> str:
        return QUANT_METHOD

    def get_supported_act_dtypes(self) -> list[torch.dtype]:
        return [torch.float16, torch.bfloat16, torch.float32]

    @classmethod
    def get_min_capability(cls) -> int:
        return 70  # any GPU serves it densely; sparse kernels switch on at sm80 by themselves

    @staticmethod
    def get_config_filenames() -> list[str]:
        return []  # the marker lives in config.json

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sparse24Config:
        return cls(parse_marker(config))

    def get_quant_method(self, layer: torch.nn.Module, prefix: str) -> QuantizeMethodBase | None:
        if not isinstance(layer, LinearBase):
            return None  # embeddings and lm_head stay dense
        shards = shard_names(prefix, self.packed_modules_mapping)
        covered = coverage(self.marker, shards)
        if covered == "none":
            return UnquantizedLinearMethod()
        if covered == "partial":
            log.warning(
                "sparse24: %s fuses %s, only some of them are 2:4 targets; serving it dense", prefix, shards
            )
            return UnquantizedLinearMethod()
        return Sparse24LinearMethod(self, prefix, shards)

    def table_for(self, weight: torch.Tensor) -> DispatchTable:
        from sparse24.backends import BackendSet
        from sparse24.measure import table_for

        key = (weight.shape[0], weight.shape[1], str(weight.dtype))
        if key not in self._tables:
            s = self.settings
            self._tables[key] = table_for(
                weight, BackendSet.named(s.kernels), s.cache_root, s.tolerance, s.remeasure
            )
        return self._tables[key]


@register_weight_loader_v2_supported_method
class Sparse24LinearMethod(LinearMethodBase):
    """Dense weights at load, verified 2:4, then measured sparse kernels (CUDA) or vLLM's dense path."""

    def __init__(self, config: Sparse24Config, prefix: str, shards: list[str]) -> None:
        self.config = config
        self.prefix = prefix
        self.shards = shards
        self._dense = UnquantizedLinearMethod()

    def create_weights(
        self,
        layer: torch.nn.Module,
        input_size_per_partition: int,
        output_partition_sizes: list[int],
        input_size: int,
        output_size: int,
        params_dtype: torch.dtype,
        **extra_weight_attrs: Any,
    ) -> None:
        self._dense.create_weights(
            layer,
            input_size_per_partition,
            output_partition_sizes,
            input_size,
            output_size,
            params_dtype,
            **extra_weight_attrs,
        )
        layer.sp24_shard_rows = list(output_partition_sizes)

    def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
        weight = layer.weight
        if not weight.is_meta:
            self._verify(weight.data, layer.sp24_shard_rows)
        if self._accelerated(weight):
            self._prepare_sparse(layer)
        else:
            self._dense.process_weights_after_loading(layer)

    def apply(
        self, layer: torch.nn.Module, x: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        args = getattr(layer, "sp24_table_args", None)
        if args is None:
            return self._dense.apply(layer, x, bias)
        n, k = layer.sp24_shape
        y = torch.ops.sparsefleet.sp24_linear(
            x.reshape(-1, k),
            layer.sp24_dense,
            layer.sp24_cslt,
            layer.sp24_mma_values,
            layer.sp24_mma_meta,
            n,
            k,
            *args,
        ).reshape(*x.shape[:-1], n)
        return y if bias is None else y + bias

    def _verify(self, weight: torch.Tensor, shard_rows: list[int]) -> None:
        check = check_24(weight)
        if check.ok:
            return
        name, row = self.prefix, check.first_row
        if check.first_row is not None:
            for shard, rows in zip(self.shards, shard_rows, strict=False):
                if row < rows:
                    name = shard
                    break
                row -= rows
        where = (
            check.reason
            if check.reason
            else f"{check.violations} of {check.groups} groups of 4 inputs hold more than 2 non-zeros, "
            f"first at row {row}, input columns {check.first_col}-{check.first_col + 3}"
        )
        raise Sparse24PatternError(
            f"{name}: weight is not 2:4 sparse ({where}); the checkpoint's quantization_config says "
            f"{QUANT_METHOD} — prune it with `prune-jobs run --pattern 2:4` or remove that marker"
        )

    def _accelerated(self, weight: torch.Tensor) -> bool:
        if weight.is_meta or not weight.is_cuda or not current_platform.is_cuda():
            return False
        if weight.dtype not in (torch.float16, torch.bfloat16) or not self.config.settings.accelerate:
            return False
        return torch.cuda.get_device_capability(weight.device)[0] >= 8

    def _prepare_sparse(self, layer: torch.nn.Module) -> None:
        from sparse24 import kernel
        from sparse24.backends import CusparseltBackend, MmaSpBackend
        from sparse24.ops import table_arguments

        weight = layer.weight.data
        table = self.config.table_for(weight)
        used = table.kernels()
        empty = weight.new_empty(0)
        packed = MmaSpBackend().prepare(weight) if "mma_sp" in used else None
        lower = 1
        for choice in table.choices:  # every token-tile variant a batch in this bucket can need
            if choice.kernel == "mma_sp":
                upper = min(choice.m, kernel.MAX_TOKENS)
                for m in {kernel.token_tiles(m) * 8 for m in range(lower, upper + 1)}:
                    kernel.precompile(weight.dtype, m, choice.variant, weight.device)
            lower = choice.m + 1
        layer.register_buffer("sp24_dense", weight if "dense" in used else empty, persistent=False)
        layer.register_buffer(
            "sp24_cslt",
            CusparseltBackend().prepare(weight) if "cusparselt" in used else empty,
            persistent=False,
        )
        layer.register_buffer("sp24_mma_values", packed.values if packed else empty, persistent=False)
        layer.register_buffer("sp24_mma_meta", packed.meta if packed else empty, persistent=False)
        layer.sp24_shape = tuple(weight.shape)
        layer.sp24_table_args = table_arguments(table)
        if "dense" not in used:  # the sparse formats replace the dense copy: this is where memory is saved
            layer.weight = torch.nn.Parameter(empty, requires_grad=False)
        log.info(
            "sparse24: %s %dx%d -> %s",
            self.prefix,
            *layer.sp24_shape,
            ", ".join(f"M<={c.m}:{c.kernel} {c.speedup:.2f}x" for c in table.choices),
        )


def register() -> None:
    """Entry point (`vllm.general_plugins`): make `sparsefleet_24` a known quantization method.

    vLLM may call it more than once per process; registering the same class again is harmless.
    """
    import sparse24.ops  # noqa: F401  (registers torch.ops.sparsefleet.sp24_linear)

    register_quantization_config(QUANT_METHOD)(Sparse24Config)
