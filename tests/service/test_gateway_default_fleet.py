"""The default fleet: the dense embedded model located through the prune_jobs CLI, and the 2:4 copy produced
once by a subprocess whose failure is reported without stopping the gateway."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from service.default_fleet import (
    default_fleet_data,
    ensure_sparse_checkpoint,
    fetch_dense_model,
    is_checkpoint,
)
from service.settings import build_fleet

COPY_CHECKPOINT = (
    "import shutil, sys; src, out = sys.argv[1], sys.argv[2]; "
    "print('pruning 100%', file=sys.stderr); shutil.copytree(src, out)"
)


def test_dense_model_comes_from_the_prune_jobs_cli(embedded_model_dir):
    assert fetch_dense_model() == embedded_model_dir


def test_sparse_checkpoint_is_produced_once_and_moved_into_place(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    (source / "config.json").write_text("{}")
    (source / "model.safetensors").write_bytes(b"")
    target = tmp_path / "checkpoints" / "tiny-2of4"
    runs = []

    def command(output: Path) -> list[str]:
        runs.append(output)
        return [sys.executable, "-c", COPY_CHECKPOINT, str(source), str(output)]

    assert ensure_sparse_checkpoint(target, command)
    assert is_checkpoint(target) and not any(p.name.endswith(".partial") for p in target.parent.iterdir())
    assert ensure_sparse_checkpoint(target, command)  # already there: no second run
    assert len(runs) == 1 and runs[0] != target


def test_failed_prune_job_is_reported_and_leaves_nothing_behind(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    target = tmp_path / "checkpoints" / "tiny-2of4"

    def command(output: Path) -> list[str]:
        return [sys.executable, "-c", "import sys, os; os.makedirs(sys.argv[1]); sys.exit(3)", str(output)]

    assert not ensure_sparse_checkpoint(target, command)
    assert list(target.parent.iterdir()) == [target.parent / f".{target.name}.lock"]
    assert "exited 3" in caplog.text and "Serving the dense replica only" in caplog.text


def test_default_fleet_names_both_variants(monkeypatch, tmp_path, embedded_model_dir):
    monkeypatch.setattr("service.default_fleet.cache_root", lambda: tmp_path)
    monkeypatch.setattr("service.default_fleet.ensure_sparse_checkpoint", lambda target: False)
    fleet = build_fleet(default_fleet_data())
    dense, sparse = fleet.replicas
    assert (dense.variant, dense.model) == ("dense", embedded_model_dir)
    assert (
        sparse.variant == "sparse-2:4"
        and sparse.model == tmp_path / "checkpoints" / "smollm2-135m-wanda-2of4"
    )
    assert fleet.routing.weights == {"dense": 1.0, "sparse-2:4": 1.0}
