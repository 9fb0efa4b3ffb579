"""The staging rules and dashboards against the real thing: a real Prometheus (Debian binary, the committed
config and rule files) scrapes a real gateway serving two real vLLM-CPU engines — a tiny dense Llama and
its 2:4 copy — under a short bounded load. Every dashboard query and every recording rule must parse and
return data."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from checkpoints import dense_and_2_of_4
from live_checks import query_problems, rule_group_problems
from prometheus_server import GATEWAY_JOB, Prometheus, free_port, running_prometheus
from staging_tools import require_tool

READY_TIMEOUT_S = 480  # two engines start one after the other; minutes on a busy 2-core machine
LOAD_S = 15
WORKERS_PER_VARIANT = 2
PROMPTS = ["The capital of France is", "Once upon a time", "List three prime numbers:", "def fibonacci(n):"]


def _fleet(checkpoints: dict[str, Path]) -> dict:
    engine = {"dtype": "float32", "enforce_eager": True, "max_model_len": 512, "max_num_seqs": 8,
              "kv_cache_gib": 0.25}  # fmt: skip
    return {
        "replicas": [
            {
                "name": f"{Path(path).name}-0",
                "variant": variant,
                "kind": "vllm",
                "model": str(path),
                "engine": engine,
            }  # fmt: skip
            for variant, path in checkpoints.items()
        ]
    }


def _stop(process: subprocess.Popen, grace_s: float = 10) -> None:
    """SIGTERM the gateway's process group (it and its engine processes), SIGKILL what outlives the grace."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # engine processes left in the group
    except ProcessLookupError:
        pass
    process.wait()


@pytest.fixture
def gateway(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    checkpoints = dense_and_2_of_4(request.getfixturevalue("tiny_llama_dir"), tmp_path / "checkpoints")
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(yaml.safe_dump(_fleet(checkpoints)))
    port = free_port()
    log_file = tmp_path / "gateway.log"
    with log_file.open("w") as log:
        argv = [sys.executable, "-m", "service", "--fleet", str(fleet_file), "--host", "127.0.0.1",
                "--port", str(port), "--log-level", "warning"]  # fmt: skip
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield f"127.0.0.1:{port}", process, log_file
    finally:
        _stop(process)


def _wait_until_all_ready(address: str, process: subprocess.Popen, log_file: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"gateway exited with {process.returncode}: {log_file.read_text()[-3000:]}")
            try:
                body = client.get(f"http://{address}/ready").json()
                if body.get("replicas") and all(state == "ready" for state in body["replicas"].values()):
                    return
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(1)
    pytest.fail(f"gateway replicas not all ready after {READY_TIMEOUT_S} s: {log_file.read_text()[-3000:]}")


async def _load(address: str, variants: list[str], seconds: float) -> dict[str, int]:
    """Closed-loop load: WORKERS_PER_VARIANT clients per variant, streaming and not, until the deadline."""
    done = {variant: 0 for variant in variants}
    deadline = time.monotonic() + seconds

    async def worker(client: httpx.AsyncClient, variant: str, index: int) -> None:
        while time.monotonic() < deadline:
            body = {"prompt": PROMPTS[(index + done[variant]) % len(PROMPTS)], "max_tokens": 24,
                    "variant": variant, "stream": bool(done[variant] % 2)}  # fmt: skip
            async with client.stream("POST", f"http://{address}/generate", json=body) as response:
                await response.aread()
                assert response.status_code == 200, response.text
            done[variant] += 1

    async with httpx.AsyncClient(timeout=60) as client:
        await asyncio.gather(*(worker(client, v, i) for v in variants for i in range(WORKERS_PER_VARIANT)))
    return done


def _value(prom: Prometheus, expr: str) -> dict[str, float]:
    return {r["metric"].get("variant", ""): float(r["value"][1]) for r in prom.query(expr)}


@pytest.mark.slow
def test_every_panel_and_recording_rule_returns_data_from_a_real_gateway(gateway, tmp_path: Path) -> None:
    prometheus_bin = require_tool("prometheus", "real-Prometheus test, apt prometheus")
    address, process, log_file = gateway
    (tmp_path / "prometheus").mkdir()
    with running_prometheus(prometheus_bin, address, tmp_path / "prometheus") as prom:
        waited = time.monotonic()
        _wait_until_all_ready(address, process, log_file)
        started = time.monotonic()
        print(f"\ngateway ready after {started - waited:.0f} s, loadavg {os.getloadavg()}")
        done = asyncio.run(_load(address, ["dense", "sparse-2:4"], LOAD_S))
        print(f"load: {done} requests in {time.monotonic() - started:.1f} s, loadavg {os.getloadavg()}")
        # One more scrape and two rule evaluations after the last request (1 s intervals).
        prom.wait_until(f'sum(sparsefleet_requests_total{{outcome="success"}}) >= {sum(done.values())}', 15,
                        "the last requests to be scraped")  # fmt: skip
        time.sleep(2.5)

        assert {t["labels"]["job"]: t["health"] for t in prom.targets()}[GATEWAY_JOB] == "up"
        assert sorted(prom.label_values("variant", "sparsefleet_variant_info")) == ["dense", "sparse-2:4"]
        assert rule_group_problems(prom) == []
        assert query_problems(prom, window_s=LOAD_S) == []

        tokens = _value(prom, "variant:sparsefleet_generation_tokens:rate1m")
        assert set(tokens) == {"dense", "sparse-2:4"} and all(v > 0 for v in tokens.values()), tokens
        assert _value(prom, "variant_ratio:sparsefleet_generation_tokens:rate1m")["dense"] == 1.0
        assert _value(prom, "variant:sparsefleet_replica_up:sum") == {"dense": 1.0, "sparse-2:4": 1.0}
        itl = _value(prom, "variant_ratio:sparsefleet_inter_token_latency_seconds:p50_1m")
        saving = _value(prom, "variant:sparsefleet_fleet_monthly_cost_saving:ratio_to_baseline")
        print(f"sparse/dense inter-token latency p50 {itl['sparse-2:4']:.3f}, "
              f"saving at target {saving['sparse-2:4']:+.1%}")  # fmt: skip
