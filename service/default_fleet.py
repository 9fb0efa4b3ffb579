"""The fleet served without `--fleet`: embedded SmolLM2-135M dense plus its 2:4 Wanda-pruned copy.

Both checkpoints come from the `prune_jobs` command line (run as subprocesses: the gateway never imports
another stage): `fetch-model` prints the dense directory, `run` produces the 2:4 copy once into
`$SPARSEFLEET_CACHE/checkpoints/`, with its progress shown on this terminal. If pruning fails the gateway
says why and serves the dense replica alone; the sparse one is reported failed in /ready and /replicas.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.errors import ConfigError

log = logging.getLogger(__name__)

EMBEDDED = "embedded:smollm2-135m"
SPARSE_DIR_NAME = "smollm2-135m-wanda-2of4"
DENSE_VARIANT = "dense"
SPARSE_VARIANT = "sparse-2:4"
PRUNE_ARGS = ("--method", "wanda", "--pattern", "2:4", "--calibration", "self",
              "--calibration-samples", "32", "--calibration-seqlen", "256")  # fmt: skip


def cache_root() -> Path:
    env = os.environ.get("SPARSEFLEET_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sparsefleet"


def default_fleet_data(*, produce: bool = True) -> dict[str, Any]:
    """The default fleet as fleet-file data (environment overrides still apply on top); `produce=False`
    only names the 2:4 checkpoint instead of pruning it when missing (for `--check`)."""
    dense = fetch_dense_model()
    sparse = cache_root() / "checkpoints" / SPARSE_DIR_NAME
    if produce:
        ensure_sparse_checkpoint(sparse)
    return {
        "replicas": [
            {"name": "dense-0", "variant": DENSE_VARIANT, "kind": "vllm", "model": str(dense)},
            {"name": "sparse-2:4-0", "variant": SPARSE_VARIANT, "kind": "vllm", "model": str(sparse)},
        ],
        "routing": {"policy": "weighted", "weights": {DENSE_VARIANT: 1.0, SPARSE_VARIANT: 1.0}},
    }


def fetch_dense_model() -> Path:
    cmd = [sys.executable, "-m", "prune_jobs", "fetch-model", EMBEDDED]
    log.info("locating the embedded model: %s", " ".join(cmd[1:]))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True)  # stderr: progress, on screen
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise ConfigError(f"`prune_jobs fetch-model {EMBEDDED}` failed (exit {proc.returncode}); see above")
    return Path(lines[-1])


def is_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def prune_command(output: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "prune_jobs",
        "run",
        "--model",
        EMBEDDED,
        *PRUNE_ARGS,
        "--output",
        str(output),
    ]


def ensure_sparse_checkpoint(target: Path, command: Callable[[Path], list[str]] = prune_command) -> bool:
    """Produce the 2:4 copy once (gateways starting meanwhile wait for it); False when pruning failed.

    The job writes into a hidden staging directory that is renamed into place only when it succeeded, so
    an interrupted run never leaves a half-written checkpoint that a later start would trust.
    """
    if is_checkpoint(target):
        return True
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_checkpoint(target):
            return True
        staging = target.with_name(f".{target.name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        cmd = command(staging)
        log.info("producing the 2:4 checkpoint once (a few minutes): %s", " ".join(cmd[1:]))
        # Inherit the terminal so the prune job's own progress bars show as it runs.
        code = subprocess.run(cmd).returncode
        if code != 0 or not is_checkpoint(staging):
            shutil.rmtree(staging, ignore_errors=True)
            log.error(
                "could not produce the 2:4 checkpoint (`%s` exited %d; does this install have the prune "
                "job?). Serving the dense replica only; sparse-2:4-0 is reported failed. Retry with: %s",
                " ".join(cmd[1:4]),
                code,
                " ".join(command(target)[1:]),
            )
            return False
        staging.rename(target)
    log.info("2:4 checkpoint ready at %s", target)
    return True
