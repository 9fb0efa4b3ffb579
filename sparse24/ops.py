"""`torch.ops.sparsefleet.sp24_linear`: the per-call dispatch, as one opaque op.

vLLM compiles the model with torch.compile and captures CUDA graphs per batch size. Branching on the
token count in Python inside `apply` would make Dynamo guard or recompile on it; inside a custom op the
branch runs on concrete shapes, and the kernel it launches is what the CUDA graph records. The table
travels as int lists (bucket bounds, kernel ids, variants), so the op needs no state outside its arguments.
Nothing here synchronises with the host.
"""

from __future__ import annotations

import torch

from sparse24.dispatch import KERNELS, DispatchTable, bucket_index

KERNEL_IDS = {name: i for i, name in enumerate(KERNELS)}


def table_arguments(table: DispatchTable) -> tuple[list[int], list[int], list[int]]:
    """(bucket bounds, kernel ids, variants) for `sp24_linear`."""
    return (
        [c.m for c in table.choices],
        [KERNEL_IDS[c.kernel] for c in table.choices],
        [c.variant for c in table.choices],
    )


@torch.library.custom_op("sparsefleet::sp24_linear", mutates_args=())
def sp24_linear(
    x: torch.Tensor,
    dense_weight: torch.Tensor,
    cslt_weight: torch.Tensor,
    mma_values: torch.Tensor,
    mma_meta: torch.Tensor,
    n: int,
    k: int,
    bucket_m: list[int],
    kernel_ids: list[int],
    variants: list[int],
) -> torch.Tensor:
    """y = x @ W.T for x [T, K] by the kernel the table picked for T's bucket; unused formats are empty."""
    i = bucket_index(bucket_m, x.shape[0])
    kernel, variant = KERNELS[kernel_ids[i]], variants[i]
    if kernel == "dense":
        return torch.nn.functional.linear(x, dense_weight)
    # Imported here: the sparse paths exist only on CUDA, the dense one must work anywhere (and in tests).
    from sparse24.backends import CusparseltBackend, MmaSpBackend
    from sparse24.layout import PackedMmaSp

    if kernel == "cusparselt":
        return CusparseltBackend().run(cslt_weight, x, variant)
    if x.shape[0] > 32:  # a table measured for a different bucket set; never the case for our own tables
        raise ValueError(f"the mma.sp kernel was chosen for {x.shape[0]} tokens (at most 32)")
    return MmaSpBackend().run(PackedMmaSp(mma_values, mma_meta, n, k, x.dtype), x, variant)


@sp24_linear.register_fake
def _(x, dense_weight, cslt_weight, mma_values, mma_meta, n, k, bucket_m, kernel_ids, variants):
    return x.new_empty((x.shape[0], n))
