"""Fixtures for loadtest tests: a RunResult built from known request records (no server involved)."""

from __future__ import annotations

import pytest

from loadtest.analysis import capacities, ratios
from loadtest.fleet import TrafficPlan, VariantCapacity, size_fleet
from loadtest.records import RequestRecord
from loadtest.result import PhaseResult, RunResult, VariantInfo
from loadtest.slo import Slo
from loadtest.stats import check_slo, summarise


def _records(variant: str, n: int, ttft: float, gap: float, tokens: int) -> list[RequestRecord]:
    return [
        RequestRecord(
            index=i,
            variant=variant,
            scheduled_s=i * 0.5,
            start_s=i * 0.5,
            ttft_s=ttft + 0.001 * i,
            e2el_s=ttft + gap * (tokens - 1),
            itl_s=[gap] * (tokens - 1),
            output_tokens=tokens,
            prompt_tokens=32,
        )
        for i in range(n)
    ]


def build_result(
    speeds: dict[str, float], perplexities: dict[str, float | None], slo: Slo | None
) -> RunResult:
    """One closed-loop step per variant; `speeds` scale the per-token gap (1.0 = 20 ms)."""
    infos = [
        VariantInfo(
            name=v,
            method="none" if i == 0 else "wanda",
            pattern=None if i == 0 else "2:4",
            perplexity=perplexities.get(v),
        )
        for i, v in enumerate(speeds)
    ]
    phases = []
    for v, speed in speeds.items():
        records = _records(v, 20, 0.05, 0.02 / speed, 16)
        phases.append(
            PhaseResult(
                variant=v,
                step=0,
                label="concurrency 2",
                kind="concurrency",
                concurrency=2,
                started_at=0.0,
                client=summarise(records, 10.0 / speed, slo),
                slo=check_slo(records, slo) if slo else None,
                requests=records,
            )
        )
    baseline = next(iter(speeds))
    caps = capacities(phases, infos, sweep=False)
    plan = TrafficPlan(requests_per_day=500_000, peak_to_mean=2.0)
    fleet = size_fleet(
        plan,
        [
            VariantCapacity(
                variant=c.variant,
                rps_per_replica=c.rps_per_replica,
                output_tokens_per_request=16,
                perplexity=perplexities.get(c.variant),
            )
            for c in caps
        ],
        baseline,
    )
    return RunResult(
        created_at="2026-01-01T00:00:00Z",
        command="loadtest run (test)",
        versions={},
        loadavg_before=(1.0, 1.0, 1.0),
        loadavg_after=(1.0, 1.0, 1.0),
        url="http://x",
        endpoint="completions",
        mode="sequential",
        baseline=baseline,
        variants=infos,
        workload={
            "kind": "synthetic",
            "input_tokens": 32,
            "output_tokens": 16,
            "spread": 0.0,
            "count": 20,
            "seed": 0,
        },
        profile={"kind": "concurrency", "concurrency": 2},
        bounds={"duration_s": 10.0, "max_requests": None, "warmup_requests": 0},
        slo=slo.model_dump() if slo else None,
        phases=phases,
        capacities=caps,
        ratios=ratios(phases, baseline),
        fleet=fleet,
    )


@pytest.fixture()
def sample_result() -> RunResult:
    """dense vs a 2:4 variant 5% slower (within noise) that costs perplexity."""
    return build_result(
        {"dense": 1.0, "sparse-2:4": 0.95}, {"dense": 24.46, "sparse-2:4": 159.6}, Slo(ttft=0.5, e2el=2.0)
    )


@pytest.fixture()
def result_builder():
    return build_result


# -- a real vLLM-CPU OpenAI server ------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process, log_path, timeout_s: float) -> None:
    """Poll `url` until it answers 200; fail with the server's last log lines if it dies or takes too long."""
    import time

    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
            pytest.fail(f"server exited with {process.returncode} before answering {url}:\n{tail}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    pytest.fail(f"{url} did not answer within {timeout_s:.0f}s (log: {log_path})")


def stop_group(process) -> None:
    import os
    import signal
    import subprocess

    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def vllm_url(tiny_llama_dir, tmp_path_factory):
    """`vllm serve` of the tiny random Llama under two names, `dense` and `sparse`: two "variants" of one
    engine, enough to exercise the client, runner and reports against a real OpenAI-compatible server."""
    import os
    import subprocess
    import sys

    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(tiny_llama_dir),
        "--dtype",
        "float32",
        "--enforce-eager",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--served-model-name",
        "dense",
        "sparse",
        "--max-model-len",
        "1024",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/v1/models", process, log_path, timeout_s=300)
        yield url
    finally:
        stop_group(process)
