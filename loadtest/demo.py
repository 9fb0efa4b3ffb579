"""`loadtest demo`: the project's main job end to end, with the gateway as a subprocess.

Start `gateway` with no fleet file (on first start it prunes the embedded SmolLM2 to 2:4 through the
prune-jobs CLI, then serves dense and 2:4 side by side), wait until every replica is up, run a short bounded
load test at every variant, print the comparison and fleet sizing, and stop the gateway, whatever happens.
loadtest never imports service/: it only starts its documented CLI and talks HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from pydantic import BaseModel, Field
from rich.console import Console

from loadtest.errors import LoadTestError, TargetError
from loadtest.report import SAME_SPEED
from loadtest.result import RunResult
from loadtest.run import with_perplexities
from loadtest.server_metrics import parse_scrape, variant_info

_STOP_GRACE_S = 30.0


class DemoOptions(BaseModel):
    duration_s: float = Field(default=40.0, gt=0)
    concurrency: int = Field(default=4, gt=0, le=64)
    input_tokens: int = Field(default=128, gt=0)
    output_tokens: int = Field(default=64, gt=0)
    warmup_requests: int = Field(default=2, ge=0)
    slo: str | None = None
    output_dir: Path
    gateway_cmd: list[str] | None = Field(default=None, description="default: the `gateway` console script")
    ready_timeout_s: float = Field(default=1200.0, gt=0)
    eval_text: Path | None = Field(default=None, description="text for perplexities the reports lack")
    eval_windows: int = Field(default=8, gt=0)
    eval_seqlen: int = Field(default=512, gt=1)


def run_demo(options: DemoOptions, console: Console | None = None) -> None:
    from loadtest.cli import measure, publish
    from loadtest.config import Bounds, RunConfig
    from loadtest.fleet import TrafficPlan
    from loadtest.profiles import ConcurrencyProfile
    from loadtest.slo import parse_slo
    from loadtest.workloads import SyntheticWorkload

    console = console or Console()
    options.output_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [*(options.gateway_cmd or default_gateway_cmd()), "--host", "127.0.0.1", "--port", str(port)]
    log_path = options.output_dir / "gateway.log"
    console.rule("sparsefleet demo: dense vs 2:4 SmolLM2-135M on this machine")
    console.print(f"starting the gateway: [bold]{' '.join(command)}[/] (log: {log_path})")
    with gateway_process(command, log_path) as process:
        wait_until_ready(url, process, log_path, options.ready_timeout_s, console)
        variants, baseline = discover_variants(url)
        console.print(f"variants: {', '.join(variants)} (baseline {baseline})")
        config = RunConfig(
            url=url,
            variants=tuple(variants),
            baseline=baseline,
            # Both variants at once from one start time: each engine has its own core, and whatever else
            # runs on the machine slows both alike (one after the other, a burst of other work once made
            # the dense variant look 2.7x slower than the 2:4 one).
            mode="interleaved",
            profile=ConcurrencyProfile(concurrency=options.concurrency),
            workload=SyntheticWorkload(
                input_tokens=options.input_tokens, output_tokens=options.output_tokens
            ),
            bounds=Bounds(duration_s=options.duration_s, warmup_requests=options.warmup_requests),
            slo=parse_slo(options.slo) if options.slo else None,
            plan=TrafficPlan(requests_per_day=1_000_000, peak_to_mean=2.0),
            output_dir=options.output_dir,
        )
        result = measure(config)
        checkpoints = checkpoint_dirs(url, default_fleet="--fleet" not in command)
        console.print("stopping the gateway ...")
    if any(v.perplexity is None for v in result.variants):
        result = measure_quality(result, checkpoints, options, console)
    explanation = why_not_faster(result)
    if explanation:
        result = with_note(result, explanation)
    publish(result, options.output_dir, console)
    console.print("done.")


def checkpoint_dirs(url: str, *, default_fleet: bool) -> dict[str, Path]:
    """Checkpoint directory per variant: where its prune_report.json is (the gateway's `/replicas`
    metadata); the default fleet's unpruned variant is the embedded model that `prune-jobs fetch-model`
    names. Only used to measure perplexities the reports do not carry."""
    dirs: dict[str, Path] = {}
    try:
        for replica in httpx.get(f"{url}/replicas", timeout=10.0).json():
            report = (replica.get("metadata") or {}).get("report")
            if report:
                dirs.setdefault(replica["variant"], Path(report).parent)
            elif default_fleet and (replica.get("metadata") or {}).get("method") == "none":
                dense = _prune_jobs("fetch-model", "embedded:smollm2-135m")
                if dense is not None:
                    dirs.setdefault(replica["variant"], Path(dense))
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return dirs


def measure_quality(
    result: RunResult, checkpoints: dict[str, Path], options: DemoOptions, console: Console
) -> RunResult:
    """Perplexity of each variant whose report has none, with `prune-jobs eval` on a short text (after the
    gateway stopped, so it does not compete with the load test)."""
    text = options.eval_text or default_eval_text()
    missing = [v.name for v in result.variants if v.perplexity is None]
    if text is None or not text.is_file():
        return with_note(
            result,
            f"perplexity of {', '.join(missing)} unknown: no prune_report.json perplexity "
            "and no evaluation text (give --eval-text FILE or set SPARSEFLEET_EVAL_TEXT)",
        )
    measured: dict[str, float] = {}
    for variant in missing:
        if variant not in checkpoints:
            continue
        with console.status(
            f"perplexity of {variant} on {text.name} ({options.eval_windows} × "
            f"{options.eval_seqlen} tokens) ..."
        ):
            out = _prune_jobs(
                "eval",
                "--model",
                str(checkpoints[variant]),
                "--text",
                str(text),
                "--seqlen",
                str(options.eval_seqlen),
                "--windows",
                str(options.eval_windows),
            )
        try:
            measured[variant] = float(json.loads(out or "")["perplexity"])
        except (ValueError, KeyError, TypeError):
            console.print(f"could not measure the perplexity of {variant} with prune-jobs eval")
    if not measured:
        return with_note(result, f"perplexity of {', '.join(missing)} unknown (prune-jobs eval failed)")
    note = (
        f"perplexity of {', '.join(measured)} measured by the demo with prune-jobs eval on {text} "
        f"(first {options.eval_windows} windows of {options.eval_seqlen} tokens: fewer than the shared "
        "protocol's 40 × 1024, so compare the variants with each other, not with other tables)"
    )
    return with_perplexities(result, measured, note)


def why_not_faster(result: RunResult) -> str | None:
    """The reason behind a 2:4 variant that measured no faster on a CPU (the demo's usual outcome)."""
    slow = [
        r.variant
        for r in result.ratios
        if r.step == result.headline_step()
        and result.variant(r.variant).pattern == "2:4"
        and (r.figures.get("output_throughput") or 0.0) <= 1 + SAME_SPEED
    ]
    if not slow:
        return None
    return (
        f"{', '.join(slow)} is not faster here because vLLM's CPU backend has no 2:4 sparse kernel: the "
        "pruned zeros are multiplied like any other weight. 2:4 pays only where the hardware skips them "
        "(sparse tensor cores of NVIDIA Ampere and later GPUs); this command measures that there too."
    )


def with_note(result: RunResult, note: str) -> RunResult:
    updated = result.model_copy(deep=True)
    updated.notes.append(note)
    return updated


def default_eval_text() -> Path | None:
    """$SPARSEFLEET_EVAL_TEXT, else the shared WikiText-2 test split beside this checkout, if present."""
    env = os.environ.get("SPARSEFLEET_EVAL_TEXT")
    if env:
        return Path(env)
    beside = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext-2" / "wiki.test.raw.txt"
    return beside if beside.is_file() else None


def _prune_jobs(*args: str) -> str | None:
    """Last stdout line of `python -m prune_jobs ARGS`, or None when it fails."""
    proc = subprocess.run([sys.executable, "-m", "prune_jobs", *args], capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    return lines[-1] if proc.returncode == 0 and lines else None


def default_gateway_cmd() -> list[str]:
    """The `gateway` console script of this Python environment (what `make setup` installs)."""
    beside = Path(sys.executable).parent / "gateway"
    if beside.is_file():
        return [str(beside)]
    raise LoadTestError(
        f"no `gateway` command beside {sys.executable}; run `make setup` (or pass --gateway-cmd)"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def gateway_process(command: list[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run the gateway in its own process group and always stop the whole group (its engines too)."""
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; vLLM-CPU's default would take a large share of RAM
    # OpenMP threads that spin while waiting starve each other on a busy machine: with the load average at
    # 10 on 2 cores, the first-start prune's self-calibration (HF generate, 2 threads) ran 142 s for 8 tokens
    # spinning and 15 s passive. Engines pinned to one core each have no OpenMP barriers to wait at.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with open(log_path, "wb") as log:
        try:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        except OSError as exc:
            raise LoadTestError(f"cannot start the gateway ({' '.join(command)}): {exc.strerror}") from None
        try:
            yield process
        finally:
            stop_process_group(process)


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


def wait_until_ready(
    url: str, process: subprocess.Popen[bytes], log_path: Path, timeout_s: float, console: Console
) -> dict[str, str]:
    """Poll until `/ready` answers 200 and no replica is still starting, showing the gateway's latest log
    line (pruning, engine start-up) meanwhile. Returns each replica's state."""
    start = time.monotonic()
    with console.status("waiting for the gateway ...") as status, httpx.Client(timeout=5.0) as http:
        while True:
            elapsed = time.monotonic() - start
            if process.poll() is not None:
                raise TargetError(
                    f"the gateway exited with code {process.returncode} before it was ready; "
                    f"last log line: {last_log_line(log_path) or '(empty)'} (full log: {log_path})"
                )
            if elapsed > timeout_s:
                raise TargetError(f"the gateway was not ready after {timeout_s:.0f}s (log: {log_path})")
            states = _settled_states(http, url)
            if states is not None:
                console.print(f"gateway ready after {elapsed:.0f}s: {_describe(states)}")
                return states
            status.update(f"[{elapsed:4.0f}s] waiting for the gateway: {last_log_line(log_path)[:100]}")
            time.sleep(1.0)


def _settled_states(http: httpx.Client, url: str) -> dict[str, str] | None:
    """Replica states from `/ready` once it answers 200 and none is `starting`; None until then."""
    try:
        response = http.get(f"{url}/ready")
        states = response.json().get("replicas", {}) if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    if not isinstance(states, dict) or any(state == "starting" for state in states.values()):
        return None
    return {str(k): str(v) for k, v in states.items()}


def _describe(states: dict[str, str]) -> str:
    return ", ".join(f"{name} {state}" for name, state in states.items())


def discover_variants(url: str) -> tuple[list[str], str]:
    """Variants with a replica up (`sparsefleet_replica_up`), the unpruned one (method none) first as the
    baseline. Fewer than two means there is nothing to compare: say which replica failed and why."""
    try:
        scrape = parse_scrape(httpx.get(f"{url}/metrics", timeout=10.0).text)
    except httpx.HTTPError as exc:
        raise TargetError(f"cannot read {url}/metrics: {exc}") from None
    info = variant_info(scrape)
    up = {
        dict(labels).get("variant")
        for (name, labels), value in scrape.items()
        if name == "sparsefleet_replica_up" and value == 1
    }
    names = sorted((v for v in info if v in up), key=lambda v: (info[v].get("method") != "none", v))
    if len(names) < 2:
        raise TargetError(
            f"the demo compares two variants but only {', '.join(names) or 'none'} is serving; "
            f"{_failures(url) or 'see the gateway log'}"
        )
    return names, names[0]


def _failures(url: str) -> str:
    try:
        replicas = httpx.get(f"{url}/replicas", timeout=10.0).json()
        return "; ".join(
            f"{r['name']} {r['state']}: {r.get('error') or 'no error given'}"
            for r in replicas
            if not r.get("ready")
        )
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return ""


def last_log_line(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))
            lines = [
                ln
                for ln in fh.read().decode("utf-8", "replace").replace("\r", "\n").splitlines()
                if ln.strip()
            ]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""
