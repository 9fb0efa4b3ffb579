"""`--within-layer auto` picks the schedule that measured best for the job (docs/pruning.md)."""

from __future__ import annotations

import pytest

from prune_jobs.config import PruneConfig


def config(method: str, pattern: str, within_layer: str = "auto", **extra: object) -> PruneConfig:
    return PruneConfig.model_validate(
        {
            "model": "unused",
            "method": method,
            "pattern": pattern,
            "within_layer": within_layer,
            "calibration": {"source": "self"},
            **extra,
        }
    )


@pytest.mark.parametrize(
    ("method", "pattern", "extra", "expected"),
    [
        ("sparsegpt", "unstructured", {}, "parallel"),
        ("sparsegpt", "unstructured", {"sparsity": 0.7}, "parallel"),
        ("sparsegpt", "unstructured", {"quant": "w4a16"}, "parallel"),
        ("sparsegpt", "2:4", {}, "sequential"),
        ("sparsegpt", "4:8", {"quant": "int8"}, "sequential"),
        ("wanda", "unstructured", {}, "sequential"),
        ("wanda", "2:4", {}, "sequential"),
        ("magnitude", "unstructured", {"quant": "int8"}, "sequential"),
    ],
)
def test_auto_resolves_per_method_and_pattern(method, pattern, extra, expected):
    assert config(method, pattern, **extra).schedule == expected


@pytest.mark.parametrize("asked", ["sequential", "parallel"])
@pytest.mark.parametrize(("method", "pattern"), [("sparsegpt", "unstructured"), ("wanda", "2:4")])
def test_an_explicit_schedule_is_kept(asked, method, pattern):
    assert config(method, pattern, within_layer=asked).schedule == asked


def test_auto_is_the_default():
    assert PruneConfig(model="unused", method="magnitude").within_layer == "auto"
