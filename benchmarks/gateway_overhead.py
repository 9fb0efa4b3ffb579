"""The gateway's own overhead: the same vLLM server called directly and through the gateway, in one run.

Topology: client → `vllm serve` (direct) versus client → gateway → the same `vllm serve` (a `remote`
replica), so the only difference is the gateway hop. Rounds alternate between the two paths (ABBA order)
so that drift in a shared machine's load hits both alike. Every request streams `/v1/completions` with the
same prompt, temperature 0 and `ignore_eos`, so both paths generate exactly `max_tokens` per request.

A second, single-stream probe alternates one-token requests between the paths request by request: the
added latency of the hop itself, without the noise of 50 streams sharing two cores. CPU time of the vLLM
processes and of the gateway is accounted per round: unlike wall time it hardly depends on what else runs on
a shared machine, and on a CPU-bound host it bounds what the gateway can cost in throughput.

    python benchmarks/gateway_overhead.py --concurrency 50 --requests 150 --rounds 3 --max-tokens 64

Prints a markdown table (paste into docs/benchmarks/gateway.md together with the command and load).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil  # comes with vLLM
import typer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


@dataclass
class Sample:
    e2e_s: float
    ttft_s: float
    tokens: int


@dataclass
class Round:
    path: str
    wall_s: float
    samples: list[Sample] = field(default_factory=list)
    errors: int = 0
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds per process group in this round

    @property
    def tokens_per_s(self) -> float:
        return sum(s.tokens for s in self.samples) / self.wall_s


class CpuMeter:
    """CPU seconds (user + system) used by each group of processes (a process and all its children)."""

    def __init__(self, roots: dict[str, int]) -> None:
        self._groups = {}
        for name, pid in roots.items():
            root = psutil.Process(pid)
            self._groups[name] = [root, *root.children(recursive=True)]

    def read(self) -> dict[str, float]:
        totals = {}
        for name, procs in self._groups.items():
            total = 0.0
            for proc in procs:
                try:
                    t = proc.cpu_times()
                    total += t.user + t.system
                except psutil.NoSuchProcess:
                    pass
            totals[name] = total
        return totals


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, timeout_s: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[2]} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f} s")


def resolve_model(model: str) -> str:
    if not model.startswith("embedded:"):
        return model
    out = subprocess.run(
        [sys.executable, "-m", "prune_jobs", "fetch-model", model], check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]


async def one_request(client: httpx.AsyncClient, url: str, body: dict) -> Sample:
    started = time.perf_counter()
    ttft = None
    tokens = 0
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and ttft is None:
                ttft = time.perf_counter() - started
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return Sample(time.perf_counter() - started, ttft or 0.0, tokens)


async def run_round(
    path: str, base: str, model: str, concurrency: int, requests: int, max_tokens: int, meter: CpuMeter
) -> Round:
    body = {
        "ignore_eos": True,  # fixed output length: both paths generate exactly max_tokens
        "model": model,
        "prompt": PROMPT,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    url = f"{base}/v1/completions"
    todo = iter(range(requests))
    result = Round(path, 0.0)
    limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def worker() -> None:
            for _ in todo:  # closed loop: each of the `concurrency` streams sends its next request when done
                try:
                    result.samples.append(await one_request(client, url, body))
                except httpx.HTTPError:
                    result.errors += 1

        cpu_before = meter.read()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.wall_s = time.perf_counter() - started
        result.cpu_s = {k: v - cpu_before[k] for k, v in meter.read().items()}
    result.load = os.getloadavg()
    return result


def pct(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]
    )


def summarize(rounds: list[Round], path: str) -> dict[str, float]:
    mine = [r for r in rounds if r.path == path]
    samples = [s for r in mine for s in r.samples]
    e2e = [s.e2e_s for s in samples]
    ttft = [s.ttft_s for s in samples]
    return {
        "p50_e2e_ms": pct(e2e, 50) * 1000,
        "p95_e2e_ms": pct(e2e, 95) * 1000,
        "p50_ttft_ms": pct(ttft, 50) * 1000,
        "tokens_per_s": sum(s.tokens for s in samples) / sum(r.wall_s for r in mine),
        "requests": len(samples),
        "errors": sum(r.errors for r in mine),
        "tokens_per_request": statistics.mean(s.tokens for s in samples),
        **{
            f"cpu_ms_per_token_{k}": sum(r.cpu_s[k] for r in mine) * 1000 / sum(s.tokens for s in samples)
            for k in mine[0].cpu_s
        },
    }


@app.command()
def main(
    model: str = typer.Option("embedded:smollm2-135m", help="Checkpoint directory or embedded:NAME."),
    concurrency: int = typer.Option(50, help="Concurrent streams (closed loop)."),
    requests: int = typer.Option(200, help="Requests per round and path."),
    rounds: int = typer.Option(3, help="Rounds per path (alternating ABBA)."),
    max_tokens: int = typer.Option(32, help="Output tokens per request."),
    warmup: int = typer.Option(20, help="Unmeasured requests per path first."),
    probe: int = typer.Option(200, help="Single-stream one-token requests per path for the hop latency."),
) -> None:
    """Measure the latency and throughput the gateway adds in front of a vLLM server."""
    model_dir = resolve_model(model)
    vllm_port = free_port()
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "VLLM_LOGGING_LEVEL": "WARNING"}
        log = open(Path(tmp) / "servers.log", "w")  # noqa: SIM115 - kept open for the subprocesses' lifetime
        try:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "vllm.entrypoints.openai.api_server",
                        "--model",
                        model_dir,
                        "--served-model-name",
                        "bench",
                        "--port",
                        str(vllm_port),
                        "--dtype",
                        "float32",
                        "--enforce-eager",
                        "--max-model-len",
                        "1024",
                        "--kv-cache-memory-bytes",
                        str(2**30),
                        "--max-num-seqs",
                        str(max(concurrency, 8)),
                        "--disable-log-stats",
                        "--disable-uvicorn-access-log",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            )
            direct = f"http://127.0.0.1:{vllm_port}"
            wait_ready(f"{direct}/health", 600, procs[0])
            fleet = Path(tmp) / "fleet.yaml"
            fleet.write_text(
                f"replicas:\n  - {{name: bench-0, variant: bench, kind: remote, url: '{direct}'}}\n"
                f"limits: {{max_concurrency: {concurrency * 2}, max_queue: {concurrency * 4}}}\n"
                "server: {log_level: warning}\n"
            )
            gw_port = (
                free_port()
            )  # picked late: on a shared machine a port picked early may be taken meanwhile
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "service", "--fleet", str(fleet), "--port", str(gw_port)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            )
            gateway = f"http://127.0.0.1:{gw_port}"
            wait_ready(f"{gateway}/ready", 120, procs[1])
            meter = CpuMeter({"vllm": procs[0].pid, "gateway": procs[1].pid})
            results = asyncio.run(
                _measure(direct, gateway, concurrency, requests, rounds, max_tokens, warmup, meter)
            )
            hop = asyncio.run(_probe(direct, gateway, probe, meter)) if probe > 0 else None
        except RuntimeError:
            log.flush()
            print((Path(tmp) / "servers.log").read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            for proc in reversed(procs):
                with _suppress():
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(60)
            log.close()
    if results:
        _report(results, model, concurrency, requests, rounds, max_tokens)
    if hop is not None:
        _report_probe(hop)


async def _measure(
    direct: str,
    gateway: str,
    concurrency: int,
    requests: int,
    rounds: int,
    max_tokens: int,
    warmup: int,
    meter: CpuMeter,
) -> list[Round]:
    paths = {"direct": direct, "gateway": gateway}
    for name, base in paths.items():
        await run_round(name, base, "bench", min(concurrency, warmup), warmup, max_tokens, meter)
    results = []
    for i in range(rounds):
        order = ["direct", "gateway"] if i % 2 == 0 else ["gateway", "direct"]
        for name in order:
            r = await run_round(name, paths[name], "bench", concurrency, requests, max_tokens, meter)
            print(
                f"round {i + 1} {name:8s} {r.tokens_per_s:8.1f} tok/s  p50 "
                f"{statistics.median(s.e2e_s for s in r.samples) * 1000:8.1f} ms  load {r.load}",
                flush=True,
            )
            results.append(r)
    return results


@dataclass
class Probe:
    times: dict[str, list[float]]
    gateway_cpu_ms_per_request: float


async def _probe(direct: str, gateway: str, n: int, meter: CpuMeter) -> Probe:
    """One client, one request at a time, alternating paths request by request."""
    body = {
        "model": "bench",
        "prompt": "Hi",
        "max_tokens": 1,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    times: dict[str, list[float]] = {"direct": [], "gateway": []}
    async with httpx.AsyncClient(timeout=60) as client:
        cpu_before = 0.0
        for i in range(n * 2 + 20):
            if i == 20:  # the first ones warm connections and caches
                cpu_before = meter.read()["gateway"]
            name = "direct" if i % 2 == 0 else "gateway"
            sample = await one_request(
                client, f"{direct if name == 'direct' else gateway}/v1/completions", body
            )
            if i >= 20:
                times[name].append(sample.e2e_s)
        cpu_ms = (meter.read()["gateway"] - cpu_before) * 1000 / n
    return Probe(times, cpu_ms)


def _bootstrap_ci(a: list[float], b: list[float], rounds: int = 2000) -> tuple[float, float]:
    """95% interval of median(b) - median(a) by resampling: how much of the difference is noise."""
    import random

    rng = random.Random(0)
    diffs = sorted(
        statistics.median(rng.choices(b, k=len(b))) - statistics.median(rng.choices(a, k=len(a)))
        for _ in range(rounds)
    )
    return diffs[int(rounds * 0.025)], diffs[int(rounds * 0.975)]


def _report_probe(probe: Probe) -> None:
    times = probe.times
    d, g = statistics.median(times["direct"]) * 1000, statistics.median(times["gateway"]) * 1000
    low, high = _bootstrap_ci(times["direct"], times["gateway"])
    print()
    print(
        f"single-stream hop probe ({len(times['direct'])} one-token requests per path, interleaved), "
        f"load average {os.getloadavg()[0]:.2f}:"
    )
    print()
    print("| path | P50 e2e (ms) | P90 e2e (ms) |")
    print("|---|---|---|")
    print(f"| direct (vllm serve) | {d:.2f} | {pct(times['direct'], 90) * 1000:.2f} |")
    print(f"| through gateway | {g:.2f} | {pct(times['gateway'], 90) * 1000:.2f} |")
    print(
        f"| **added by the gateway** | **{g - d:+.2f}** (95% CI {low * 1000:+.2f} … {high * 1000:+.2f}) | |"
    )
    print()
    print(f"gateway CPU per one-token request: {probe.gateway_cpu_ms_per_request:.2f} ms")


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def _report(
    results: list[Round], model: str, concurrency: int, requests: int, rounds: int, max_tokens: int
) -> None:
    d, g = summarize(results, "direct"), summarize(results, "gateway")
    ratio = g["tokens_per_s"] / d["tokens_per_s"]
    per_round = [
        gr.tokens_per_s / dr.tokens_per_s
        for dr, gr in zip(
            [r for r in results if r.path == "direct"],
            [r for r in results if r.path == "gateway"],
            strict=True,
        )
    ]
    print()
    print(
        f"model {model}, {concurrency} concurrent streams, {requests} requests x {rounds} rounds per path, "
        f"max_tokens {max_tokens} (mean {g['tokens_per_request']:.1f} generated), "
        f"{os.cpu_count()} CPUs, {platform.python_version()}"
    )
    print()
    print("| path | P50 e2e (ms) | P95 e2e (ms) | P50 TTFT (ms) | output tok/s | requests | errors |")
    print("|---|---|---|---|---|---|---|")
    for name, s in (("direct (vllm serve)", d), ("through gateway", g)):
        print(
            f"| {name} | {s['p50_e2e_ms']:.1f} | {s['p95_e2e_ms']:.1f} | {s['p50_ttft_ms']:.1f} | "
            f"{s['tokens_per_s']:.1f} | {s['requests']} | {s['errors']} |"
        )
    print(
        f"| **gateway − direct** | **{g['p50_e2e_ms'] - d['p50_e2e_ms']:+.1f}** | "
        f"{g['p95_e2e_ms'] - d['p95_e2e_ms']:+.1f} | {g['p50_ttft_ms'] - d['p50_ttft_ms']:+.1f} | "
        f"**{ratio:.1%}** of direct | | |"
    )
    print()
    print(
        "throughput ratio per round (gateway / direct): "
        + ", ".join(f"{x:.1%}" for x in per_round)
        + f"; median {statistics.median(per_round):.1%}"
    )
    print("load average after each round: " + ", ".join(f"{r.path[0]}:{r.load[0]:.2f}" for r in results))
    vllm_cpu, gw_cpu = g["cpu_ms_per_token_vllm"], g["cpu_ms_per_token_gateway"]
    print()
    print("| CPU per output token (ms) | vLLM processes | gateway |")
    print("|---|---|---|")
    print(f"| direct rounds | {d['cpu_ms_per_token_vllm']:.3f} | {d['cpu_ms_per_token_gateway']:.3f} |")
    print(f"| gateway rounds | {vllm_cpu:.3f} | {gw_cpu:.3f} |")
    print()
    print(
        f"on a CPU-bound host the gateway's share of the CPU is {gw_cpu / (vllm_cpu + gw_cpu):.1%}, "
        f"i.e. at most that much throughput lost to it (target ≤ 3%)"
    )


if __name__ == "__main__":
    app()
