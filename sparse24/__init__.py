"""sparse24: the GPU path for 2:4 checkpoints — a vLLM plugin, an `mma.sp` kernel and measured dispatch.

Importing this package imports nothing heavy; vLLM reaches the plugin through `register` (entry point group
`vllm.general_plugins`), which imports vLLM only then.
"""

from __future__ import annotations


def register() -> None:
    """vLLM general-plugin entry point: registers the `sparsefleet_24` quantization method."""
    from sparse24.vllm_plugin import register as register_with_vllm

    register_with_vllm()
