"""Structured pruning: whole decoder layers (`--method depth`) or FFN channels and attention heads
(`--method width`) are removed, leaving a smaller *dense* checkpoint with a standard config that
transformers and vLLM load like any other model; optionally healed by distillation from the dense model.

Modules, one job each: `spec` (validated options), `importance` (one calibration pass over the dense
blocks), `depth` / `width` (which parts go, and the state-dict + config surgery), `rebuild` (a fresh model
from the new config), `heal` (distillation), `speed` / `speed_worker` (vLLM-CPU decode speed vs dense).
"""
