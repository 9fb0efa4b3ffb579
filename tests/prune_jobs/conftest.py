"""Fixtures of the pruning tests: calibration text and a 2:4 SparseGPT checkpoint of the tiny Llama."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.prune_jobs.helpers import run_cli, write_text


@pytest.fixture(scope="session")
def calib_text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_text(tmp_path_factory.mktemp("text") / "calib.txt")


@pytest.fixture(scope="session")
def tiny_24_dir(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path, calib_text: Path) -> Path:
    """tiny Llama → SparseGPT 2:4 through the CLI, default options (serve marker included)."""
    out = tmp_path_factory.mktemp("ckpt") / "tiny-24"
    code, _, err = run_cli(
        [
            "run",
            "--model",
            tiny_llama_dir,
            "--method",
            "sparsegpt",
            "--pattern",
            "2:4",
            "--calibration",
            calib_text,
            "--calibration-samples",
            "16",
            "--calibration-seqlen",
            "128",
            "--eval-text",
            calib_text,
            "--eval-windows",
            "4",
            "--eval-seqlen",
            "256",
            "--output",
            out,
        ]
    )
    assert code == 0, err
    return out
