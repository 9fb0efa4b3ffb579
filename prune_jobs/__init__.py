"""Offline stage: calibrate, prune (and optionally quantize) a causal LM into a vLLM-loadable checkpoint."""

__version__ = "0.1.0"
