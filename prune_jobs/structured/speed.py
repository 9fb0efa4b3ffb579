"""`--measure-speed`: the pruned checkpoint's vLLM-CPU decode speed relative to the dense one, measured in
one run (both engines in one subprocess, same prompts, alternating rounds; see `speed_worker`).

vLLM runs in a subprocess of its own session: it spawns engine processes and holds gigabytes that the
pruning job does not need; on a timeout the whole process group is killed.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prune_jobs.errors import PruneJobError
from prune_jobs.report import SpeedReport, SpeedStats
from prune_jobs.structured.spec import SpeedConfig

log = logging.getLogger(__name__)
WORKER = "prune_jobs.structured.speed_worker"
OMP_DEFAULT_MARKER = "SPARSEFLEET_OMP_WAIT_POLICY_DEFAULTED"  # set by prune_jobs.cli with its default


def measure_speed(dense_dir: Path, pruned_dir: Path, config: SpeedConfig) -> SpeedReport:
    """Decode tokens/s of `pruned_dir` vs `dense_dir` on vLLM-CPU (float32, eager, 1 GiB KV cache)."""
    result = run_worker({"dense": dense_dir, "pruned": pruned_dir}, config)
    dense, pruned = (summarize([row[label] for row in result["rounds"]]) for label in ("dense", "pruned"))
    return SpeedReport(
        engine=result["engine"],
        max_tokens=result["max_tokens"],
        batch_prompts=result["batch_prompts"],
        dense=dense,
        pruned=pruned,
        decode_speedup=round(pruned.decode_tokens_per_s / dense.decode_tokens_per_s, 4),
        batch_speedup=round(pruned.batch_tokens_per_s / dense.batch_tokens_per_s, 4),
        load_average_before=result["load_average_before"],
        load_average_after=result["load_average_after"],
        seconds=result["seconds"],
    )


def summarize(rounds: list[dict[str, float]]) -> SpeedStats:
    return SpeedStats(
        decode_tokens_per_s=round(statistics.median(r["decode_tokens_per_s"] for r in rounds), 3),
        prefill_s=round(statistics.median(r["prefill_s"] for r in rounds), 4),
        batch_tokens_per_s=round(statistics.median(r["batch_tokens_per_s"] for r in rounds), 3),
        rounds=rounds,
    )


def run_worker(models: dict[str, Path], config: SpeedConfig) -> dict:
    """Run the worker on `models` (label → directory); its JSON result, plus `seconds`."""
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    if env.pop(OMP_DEFAULT_MARKER, None):  # measure vLLM as it is served: OpenMP's own wait policy
        env.pop("OMP_WAIT_POLICY", None)
    with tempfile.TemporaryDirectory(prefix="sparsefleet-speed-") as tmp:
        out, log_path = Path(tmp) / "result.json", Path(tmp) / "worker.log"
        command = [sys.executable, "-m", WORKER, "--out", str(out)]
        command += ["--max-tokens", str(config.max_tokens), "--rounds", str(config.rounds)]
        for label, directory in models.items():
            command += ["--model", f"{label}={directory}"]
        log.info(
            "measuring vLLM-CPU decode speed of %s (load + %d rounds; minutes on a busy CPU)",
            ", ".join(models),
            config.rounds,
        )
        started = time.perf_counter()
        with log_path.open("w") as sink:
            process = subprocess.Popen(
                command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
            try:
                code = process.wait(timeout=config.timeout_s)
            except subprocess.TimeoutExpired:
                raise PruneJobError(
                    f"--measure-speed: vLLM did not finish within {config.timeout_s:.0f} s"
                ) from None
            finally:  # timeout, Ctrl-C or engine processes left behind: none may outlive the job
                _kill_group(process.pid)
                process.wait()
        if code != 0 or not out.is_file():
            raise PruneJobError(f"--measure-speed: vLLM failed (exit {code}): {_last_error(log_path)}")
        result = json.loads(out.read_text())
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _last_error(log_path: Path) -> str:
    """The most telling line of the worker's log: the last exception message, else the last line."""
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line.split(":", 1)[0] or line.startswith(("ValueError", "RuntimeError", "OSError")):
            return line[:400]
    return lines[-1][:400] if lines else "no output"
