"""deploy/compose/prune-job.sh, the compose stack's one-shot job: writes every checkpoint once, skips finished
ones, redoes interrupted ones and fails loudly. Fast tests drive it with a recording stand-in for prune-jobs;
the slow one runs the real CLI on the tiny Llama where this branch has `prune-jobs run`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from staging_tools import DEPLOY

SCRIPT = DEPLOY / "compose" / "prune-job.sh"
STAND_IN = """#!/bin/sh
# records each call, arguments joined by '|'; `run` writes a checkpoint-shaped directory (fails if PRUNE_FAIL)
(IFS='|'; echo "$*") >> "$CALLS"
case "$1" in
  fetch-model) echo "$DENSE_SRC" ;;
  run) [ -z "${PRUNE_FAIL:-}" ] || { echo "error: pruning failed" >&2; exit 2; }
       while [ "$1" != --output ]; do shift; done
       mkdir -p "$2" && echo '{}' > "$2/config.json" ;;
esac
"""


@pytest.fixture
def job(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "prune-jobs").write_text(STAND_IN)
    (bin_dir / "prune-jobs").chmod(0o755)
    dense = tmp_path / "hub" / "model"
    dense.mkdir(parents=True)
    (dense / "config.json").write_text("{}")
    out, calls = tmp_path / "checkpoints", tmp_path / "calls.txt"

    def run(**extra: str) -> subprocess.CompletedProcess:
        env = {
            "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin",
            "CALLS": str(calls),
            "DENSE_SRC": str(dense),
            "SPARSEFLEET_CHECKPOINTS": str(out),
            "SPARSEFLEET_MODEL": "embedded:smollm2-135m",
            **extra,
        }
        return subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)

    def calls_made() -> list[str]:
        lines = calls.read_text().splitlines() if calls.exists() else []
        calls.unlink(missing_ok=True)
        return lines

    return run, out, calls_made


def test_first_run_writes_dense_and_pruned_then_second_run_skips(job) -> None:
    run, out, calls = job
    first = run()
    assert first.returncode == 0, first.stderr
    assert (out / "dense" / "config.json").is_file() and (out / "sparse-2-4" / "config.json").is_file()
    made = calls()
    assert made[0] == "fetch-model|embedded:smollm2-135m"
    assert made[1] == (
        "run|--model|embedded:smollm2-135m|--method|wanda|--pattern|2:4|--calibration|self|"
        f"--output|{out}/sparse-2-4.partial"
    )
    second = run()
    assert second.returncode == 0 and calls() == []
    assert "dense already" in second.stdout and "sparse-2-4 already" in second.stdout


def test_eval_text_and_extra_arguments_reach_prune_jobs(job) -> None:
    run, out, calls = job
    proc = run(SPARSEFLEET_EVAL_TEXT="/data/my texts/wiki.txt", SPARSEFLEET_PRUNE_ARGS="--seed 3 --overwrite")
    assert proc.returncode == 0, proc.stderr
    (prune,) = [c for c in calls() if c.startswith("run|")]
    assert prune.endswith(
        "|--calibration|self|--seed|3|--overwrite|--eval-text|/data/my texts/wiki.txt|"
        f"--output|{out}/sparse-2-4.partial"
    )


def test_interrupted_variant_is_redone(job) -> None:
    run, out, calls = job
    assert run().returncode == 0
    calls()
    (out / "sparse-2-4").rename(out / "sparse-2-4.partial")  # as if killed before the final rename
    assert run().returncode == 0
    assert [c.split("|")[0] for c in calls()] == ["run"]
    assert (out / "sparse-2-4" / "config.json").is_file() and not (out / "sparse-2-4.partial").exists()


def test_failed_prune_fails_the_job_and_leaves_no_checkpoint(job) -> None:
    run, out, _ = job
    proc = run(PRUNE_FAIL="1")
    assert proc.returncode != 0 and "pruning failed" in proc.stderr
    assert (out / "dense").is_dir() and not (out / "sparse-2-4").exists()


def _has_run_command() -> bool:
    proc = subprocess.run(
        [sys.executable, "-m", "prune_jobs", "run", "--help"], capture_output=True, text=True
    )
    return proc.returncode == 0


@pytest.mark.slow
def test_real_prune_jobs_on_tiny_llama(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if not _has_run_command():
        pytest.skip("`prune-jobs run` is not on this branch yet (branch prune-core)")
    tiny_llama_dir: Path = request.getfixturevalue("tiny_llama_dir")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "prune-jobs").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m prune_jobs "$@"\n')
    (bin_dir / "prune-jobs").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SPARSEFLEET_CHECKPOINTS": str(tmp_path / "out"),
        "SPARSEFLEET_MODEL": str(tiny_llama_dir),
        # the tiny random model generates its own calibration text: a few short windows are plenty
        "SPARSEFLEET_PRUNE_ARGS": "--calibration-samples 4 --calibration-seqlen 32",
    }
    proc = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "out" / "sparse-2-4" / "prune_report.json").is_file()
    assert (tmp_path / "out" / "dense" / "config.json").is_file()
