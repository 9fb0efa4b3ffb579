"""`prune-jobs speedcheck` and the GPU benchmark scripts on a machine without a GPU: one line, a
documented exit code, no traceback. Shape derivation is checked on real configs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sparse24.speedcheck import EXIT_NO_GPU, SpeedcheckInputError, model_linear_shapes

REPO_ROOT = Path(__file__).resolve().parents[2]
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the scripts would run")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)


def one_line(stream: str) -> bool:
    return stream.strip().count("\n") == 0 and "Traceback" not in stream


def test_smollm2_linear_shapes(embedded_model_dir):
    shapes = {s.name: (s.n, s.k, s.count) for s in model_linear_shapes(embedded_model_dir)}
    assert shapes == {
        "qkv_proj": (960, 576, 30),
        "o_proj": (576, 576, 30),
        "gate_up_proj": (3072, 576, 30),
        "down_proj": (576, 1536, 30),
    }


def test_llama3_8b_like_config(tmp_path):
    config = {
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "num_hidden_layers": 32,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    shapes = {s.name: (s.n, s.k) for s in model_linear_shapes(tmp_path)}
    assert shapes == {
        "qkv_proj": (6144, 4096),
        "o_proj": (4096, 4096),
        "gate_up_proj": (28672, 4096),
        "down_proj": (4096, 14336),
    }


def test_unknown_config_is_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"d_model": 512}))
    with pytest.raises(SpeedcheckInputError, match="missing hidden_size"):
        model_linear_shapes(tmp_path)


@no_gpu
def test_speedcheck_without_gpu_says_so(tiny_llama_dir):
    proc = run("-m", "prune_jobs", "speedcheck", "--model", str(tiny_llama_dir))
    assert proc.returncode == EXIT_NO_GPU == 3
    assert one_line(proc.stderr) and proc.stderr.startswith("no GPU:")


def test_speedcheck_bad_input_is_exit_2(tmp_path, tiny_llama_dir):
    proc = run("-m", "prune_jobs", "speedcheck", "--model", str(tmp_path / "missing"))
    assert proc.returncode == 2 and one_line(proc.stderr) and proc.stderr.startswith("error:")
    proc = run("-m", "prune_jobs", "speedcheck", "--model", str(tiny_llama_dir), "--dtype", "int8")
    assert proc.returncode == 2 and "bfloat16, float16" in proc.stderr and one_line(proc.stderr)


@no_gpu
@pytest.mark.parametrize("script", ["bench_linear.py", "bench_decoder_step.py"])
def test_benchmarks_without_gpu_fail_in_one_line(script):
    proc = run(str(REPO_ROOT / "benchmarks" / "gpu" / script))
    assert proc.returncode == 3
    assert one_line(proc.stderr) and "needs an NVIDIA GPU" in proc.stderr
