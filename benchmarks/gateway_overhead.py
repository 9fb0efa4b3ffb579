"""The gateway's own overhead: the same vLLM server called directly and through the gateway, in one run.

Topology: client → `vllm serve` (direct) versus client → gateway → the same `vllm serve` (a `remote`
replica), so the only difference is the gateway hop. Rounds alternate between the two paths (ABBA order)
so that drift in a shared machine's load hits both alike. Every request streams `/v1/completions` with the
same prompt at temperature 0, so both paths generate identical token counts.

    python benchmarks/gateway_overhead.py --concurrency 50 --requests 200 --rounds 3

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

    @property
    def tokens_per_s(self) -> float:
        return sum(s.tokens for s in self.samples) / self.wall_s


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
    path: str, base: str, model: str, concurrency: int, requests: int, max_tokens: int
) -> Round:
    body = {
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

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.wall_s = time.perf_counter() - started
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
    }


@app.command()
def main(
    model: str = typer.Option("embedded:smollm2-135m", help="Checkpoint directory or embedded:NAME."),
    concurrency: int = typer.Option(50, help="Concurrent streams (closed loop)."),
    requests: int = typer.Option(200, help="Requests per round and path."),
    rounds: int = typer.Option(3, help="Rounds per path (alternating ABBA)."),
    max_tokens: int = typer.Option(32, help="Output tokens per request."),
    warmup: int = typer.Option(20, help="Unmeasured requests per path first."),
) -> None:
    """Measure the latency and throughput the gateway adds in front of a vLLM server."""
    model_dir = resolve_model(model)
    vllm_port, gw_port = free_port(), free_port()
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
            results = asyncio.run(
                _measure(direct, gateway, concurrency, requests, rounds, max_tokens, warmup)
            )
        finally:
            for proc in reversed(procs):
                with _suppress():
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(60)
            log.close()
    _report(results, model, concurrency, requests, rounds, max_tokens)


async def _measure(
    direct: str, gateway: str, concurrency: int, requests: int, rounds: int, max_tokens: int, warmup: int
) -> list[Round]:
    paths = {"direct": direct, "gateway": gateway}
    for name, base in paths.items():
        await run_round(name, base, "bench", min(concurrency, warmup), warmup, max_tokens)
    results = []
    for i in range(rounds):
        order = ["direct", "gateway"] if i % 2 == 0 else ["gateway", "direct"]
        for name in order:
            r = await run_round(name, paths[name], "bench", concurrency, requests, max_tokens)
            print(
                f"round {i + 1} {name:8s} {r.tokens_per_s:8.1f} tok/s  p50 "
                f"{statistics.median(s.e2e_s for s in r.samples) * 1000:8.1f} ms  load {r.load}",
                flush=True,
            )
            results.append(r)
    return results


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
    print("throughput ratio per round (gateway / direct): " + ", ".join(f"{x:.1%}" for x in per_round))
    print("load average after each round: " + ", ".join(f"{r.path[0]}:{r.load[0]:.2f}" for r in results))


if __name__ == "__main__":
    app()
