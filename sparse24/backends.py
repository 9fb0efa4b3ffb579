"""The three ways to run a 2:4 linear on a GPU, behind one small interface.

* dense — `F.linear` on the zero-filled weight (cuBLAS): the baseline every choice is measured against.
* cusparselt — `torch._cslt_sparse_mm` on the cuSPARSELt-compressed weight, with a searched `alg_id` per
  bucket and a fused transposed result (an untransposed one made large steps 10x slower, GPU_NOTES.md).
* mma_sp — this project's kernel for M <= 32 (`kernel.py`); its variant is the row tiles per block.

`prepare` builds a format from the dense weight once; `run` must not synchronise with the host, so that it
can be captured in a CUDA graph.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from sparse24 import kernel
from sparse24.layout import PackedMmaSp, pack_mma_sp

CSLT_ROW_MULTIPLE = 16  # cuSPARSELt: both weight dims multiples of 16 for fp16/bf16
CSLT_TOKEN_MULTIPLE = 8  # and the dense operand's columns (tokens) a multiple of 8: M=1 is padded


class Backend(Protocol):
    name: str

    def supports(self, n: int, k: int, dtype: torch.dtype) -> str | None:
        """None if this backend can serve the shape, else why not."""

    def prepare(self, weight: torch.Tensor) -> Any: ...

    def clone(self, state: Any) -> Any: ...

    def variants(self, state: Any, x: torch.Tensor) -> list[int]:
        """Variants worth timing for this input (searched or enumerated); empty if M is out of range."""

    def run(self, state: Any, x: torch.Tensor, variant: int) -> torch.Tensor: ...


class DenseBackend:
    name = "dense"

    def supports(self, n: int, k: int, dtype: torch.dtype) -> str | None:
        return None

    def prepare(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.contiguous()

    def clone(self, state: torch.Tensor) -> torch.Tensor:
        return state.clone()

    def variants(self, state: torch.Tensor, x: torch.Tensor) -> list[int]:
        return [0]

    def run(self, state: torch.Tensor, x: torch.Tensor, variant: int) -> torch.Tensor:
        return F.linear(x, state)


class CusparseltBackend:
    name = "cusparselt"

    def supports(self, n: int, k: int, dtype: torch.dtype) -> str | None:
        if not torch.backends.cusparselt.is_available():
            return "this torch build has no cuSPARSELt"
        if dtype not in (torch.float16, torch.bfloat16):
            return f"{dtype} is not served (fp16/bf16 only)"
        if n % CSLT_ROW_MULTIPLE or k % CSLT_ROW_MULTIPLE:
            return f"shape {n}x{k} is not a multiple of {CSLT_ROW_MULTIPLE}"
        return None

    def prepare(self, weight: torch.Tensor) -> torch.Tensor:
        return torch._cslt_compress(weight.contiguous())

    def clone(self, state: torch.Tensor) -> torch.Tensor:
        return state.clone()

    def variants(self, state: torch.Tensor, x: torch.Tensor) -> list[int]:
        padded = _pad_tokens(x)
        with warnings.catch_warnings():  # torch 2.11 deprecates the name, not the search; one line per call
            warnings.filterwarnings("ignore", message=r".*_cslt_sparse_mm_search is deprecated")
            return [int(torch._cslt_sparse_mm_search(state, padded.t(), transpose_result=True))]

    def run(self, state: torch.Tensor, x: torch.Tensor, variant: int) -> torch.Tensor:
        m = x.shape[0]
        out = torch._cslt_sparse_mm(state, _pad_tokens(x).t(), alg_id=variant, transpose_result=True)
        return out if out.shape[0] == m else out[:m]


class MmaSpBackend:
    name = "mma_sp"

    def supports(self, n: int, k: int, dtype: torch.dtype) -> str | None:
        if dtype not in (torch.float16, torch.bfloat16):
            return f"{dtype} is not served (fp16/bf16 only)"
        try:
            kernel.check_available()
        except kernel.KernelUnavailable as exc:
            return str(exc)
        return None

    def prepare(self, weight: torch.Tensor) -> PackedMmaSp:
        return pack_mma_sp(weight)

    def clone(self, state: PackedMmaSp) -> PackedMmaSp:
        return PackedMmaSp(state.values.clone(), state.meta.clone(), state.n, state.k, state.dtype)

    def variants(self, state: PackedMmaSp, x: torch.Tensor) -> list[int]:
        m = x.shape[0]
        if m > kernel.MAX_TOKENS:
            return []
        sms = torch.cuda.get_device_properties(x.device).multi_processor_count
        return kernel.variants(m, state.n_tiles, state.k_blocks, state.k, sms)

    def run(self, state: PackedMmaSp, x: torch.Tensor, variant: int) -> torch.Tensor:
        return kernel.mma_sp_linear(x, state, variant)


@dataclass(frozen=True)
class BackendSet:
    """The backends a measurement considers, by name (`SPARSEFLEET_SP24_KERNELS` narrows it)."""

    backends: tuple[Backend, ...]

    @classmethod
    def named(cls, names: tuple[str, ...]) -> BackendSet:
        known: dict[str, Backend] = {b.name: b for b in (DenseBackend(), CusparseltBackend(), MmaSpBackend())}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown kernel(s) {', '.join(unknown)}; known: {', '.join(known)}")
        if "dense" not in names:
            names = ("dense", *names)  # the baseline is always measured
        return cls(tuple(known[n] for n in names))


def _pad_tokens(x: torch.Tensor) -> torch.Tensor:
    pad = -x.shape[0] % CSLT_TOKEN_MULTIPLE
    return F.pad(x, (0, 0, 0, pad)) if pad else x
