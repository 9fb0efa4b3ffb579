"""sparsefleet's vLLM general plugin (entry point group `vllm.general_plugins`).

vLLM calls `register()` once in every process it starts (API server, engine core, workers), before any
model is built. Registration must therefore be cheap and idempotent.
"""

from __future__ import annotations


def register() -> None:
    from sparsefleet_vllm.cpu_wna16 import register_cpu_wna16_fallback

    register_cpu_wna16_fallback()
