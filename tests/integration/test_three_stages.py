"""The whole data flow with real parts: `prune-jobs` writes a Wanda 2:4 and a depth-pruned checkpoint of the
tiny Llama, the `gateway` serves them beside the dense model on three vLLM-CPU engines, and `loadtest run`
measures all three variants in one run and sizes a fleet for each. The variant labels, methods and
perplexities the load test reports come from the prune reports, through the gateway's HTTP only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import Server, wait_until_settled

pytestmark = pytest.mark.slow


def prune_jobs(*args: str, timeout: float = 600) -> dict[str, object]:
    """Run `python -m prune_jobs run ARGS` and return the prune_report.json it wrote."""
    proc = subprocess.run(
        [sys.executable, "-m", "prune_jobs", "run", *args], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = Path(args[args.index("--output") + 1])
    return json.loads((output / "prune_report.json").read_text())


@pytest.fixture(scope="module")
def three_variant_gateway(tiny_llama_dir: Path, wikitext_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("three-stages")
    evaluation = ["--eval-text", str(wikitext_dir / "wiki.test.raw.txt"), "--eval-windows", "2",
                  "--eval-seqlen", "256"]  # fmt: skip
    sparse = prune_jobs(
        "--model", str(tiny_llama_dir), "--method", "wanda", "--pattern", "2:4",
        "--calibration", str(wikitext_dir / "wiki.valid.tokens.txt"), "--calibration-samples", "8",
        "--calibration-seqlen", "128", *evaluation, "--output", str(work / "wanda-2of4"),
    )  # fmt: skip
    depth = prune_jobs(
        "--model", str(tiny_llama_dir), "--method", "depth", "--layers", "1", *evaluation,
        "--output", str(work / "depth-1"),
    )  # fmt: skip
    fleet = work / "fleet.yaml"
    engine = "{max_model_len: 512, kv_cache_gib: 0.25}"
    fleet.write_text(
        "replicas:\n"
        f"  - {{name: dense-0, model: '{tiny_llama_dir}', engine: {engine}}}\n"
        f"  - {{name: sparse-0, model: '{work / 'wanda-2of4'}', engine: {engine}}}\n"
        f"  - {{name: depth-0, model: '{work / 'depth-1'}', engine: {engine}}}\n"
    )
    server = Server([sys.executable, "-m", "service", "--fleet", str(fleet)], work / "gateway.log", "/ready")
    try:
        url = server.url()
        wait_until_settled(url)
        yield url, sparse, depth
    finally:
        server.stop()


def test_prune_serve_and_measure_dense_24_and_depth_in_one_run(three_variant_gateway, tmp_path):
    url, sparse, depth = three_variant_gateway
    assert (sparse["variant"], sparse["nm_check"]["valid"]) == ("sparse-2:4", True)
    assert depth["structured"]["layers_after"] == 1 and depth["variant"].startswith("depth-")
    variants = ["dense", sparse["variant"], depth["variant"]]

    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "loadtest", "run", "--url", url, "--variants", ",".join(variants),
         "--slo", "ttft=20s,e2e=30s", "--duration", "3s", "--concurrency", "2", "--input-tokens", "32",
         "--output-tokens", "8", "--warmup", "1", "-q", "-o", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())

    measured = {v["name"]: v for v in result["variants"]}
    assert sorted(measured) == sorted(variants)
    # what prune-jobs recorded reaches the load test through the gateway's /replicas and /metrics
    assert (measured[sparse["variant"]]["method"], measured[sparse["variant"]]["pattern"]) == ("wanda", "2:4")
    assert measured[depth["variant"]]["method"] == "depth"
    for report in (sparse, depth):
        assert measured[report["variant"]]["perplexity"] == pytest.approx(report["perplexity"]["pruned"])
    served = {phase["variant"] for phase in result["phases"] if phase["client"]["completed"] >= 2}
    assert served == set(variants)
    assert all(phase["client"]["failed"] == 0 for phase in result["phases"])
    lines = {line["variant"]: line for line in result["fleet"]["lines"]}
    assert sorted(lines) == sorted(variants) and all(line["replicas"] >= 1 for line in lines.values())
