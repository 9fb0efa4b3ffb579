"""Bad input → one line `error: ...` on stderr, exit code 2, no traceback."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from tests.prune_jobs.helpers import run_cli


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[-1], lines[-1]


@pytest.fixture
def base(tiny_llama_dir, calib_text, tmp_path):
    return ["run", "--model", tiny_llama_dir, "--calibration", calib_text, "--output", tmp_path / "out"]


@pytest.mark.parametrize(
    "extra,needles",
    [
        (["--method", "obd"], ["--method", "magnitude, wanda, sparsegpt"]),
        (["--method", "wanda", "--pattern", "diagonal"], ["--pattern", "unstructured"]),
        (["--method", "wanda", "--pattern", "4:4"], ["--pattern", "1 <= N < M"]),
        (["--method", "wanda", "--pattern", "5:4"], ["1 <= N < M"]),
        (["--method", "wanda", "--pattern", "0:4"], ["1 <= N < M"]),
        (["--method", "wanda", "--sparsity", "0"], ["--sparsity", "(0, 1)"]),
        (["--method", "wanda", "--sparsity", "1"], ["--sparsity", "(0, 1)"]),
        (["--method", "wanda", "--sparsity", "1.5"], ["(0, 1)"]),
        (["--method", "wanda", "--sparsity", "-0.2"], ["(0, 1)"]),
        (["--method", "wanda", "--sparsity", "abc"], ["--sparsity"]),
        (["--method", "wanda", "--pattern", "2:4", "--sparsity", "0.6"], ["--sparsity", "conflicts"]),
        (["--method", "wanda", "--quant", "fp8"], ["--quant", "int8", "w4a16"]),
        (["--method", "wanda", "--quant-group-size", "64"], ["--quant-group-size", "--quant"]),
        (["--method", "wanda", "--calibration-seqlen", "2"], ["--calibration-seqlen"]),
        (["--method", "wanda", "--calibration-samples", "0"], ["--calibration-samples"]),
        (["--method", "wanda", "--include", "("], ["--include", "regular expression"]),
        (["--method", "wanda", "--within-layer", "diagonal"], ["--within-layer"]),
        (["--method", "wanda", "--eval-text", "/no/such/text.txt"], ["--eval-text", "not found"]),
        (["--method", "wanda", "--frobnicate"], ["--frobnicate"]),
    ],
)
def test_bad_run_options(base, extra, needles):
    code, _, err = run_cli(base + extra)
    assert_one_line_error(code, err, *needles)


def test_missing_calibration_file(tiny_llama_dir, tmp_path):
    code, _, err = run_cli(
        [
            "run",
            "--model",
            tiny_llama_dir,
            "--method",
            "wanda",
            "--calibration",
            tmp_path / "nope.txt",
            "--output",
            tmp_path / "out",
        ]
    )
    assert_one_line_error(code, err, "--calibration", "nope.txt", "not found")


def test_calibration_required_for_data_driven_methods(tiny_llama_dir, tmp_path):
    code, _, err = run_cli(
        ["run", "--model", tiny_llama_dir, "--method", "sparsegpt", "--output", tmp_path / "o"]
    )
    assert_one_line_error(code, err, "--calibration", "sparsegpt")


def test_output_not_empty_without_overwrite(base, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("precious")
    code, _, err = run_cli(base + ["--method", "wanda"])
    assert_one_line_error(code, err, "--output", "not empty", "--overwrite")
    assert (tmp_path / "out" / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("model", ["/no/such/model", "embedded:gpt-17"])
def test_missing_model(model, calib_text, tmp_path):
    code, _, err = run_cli(["run", "--model", model, "--method", "magnitude", "--output", tmp_path / "o"])
    assert_one_line_error(code, err, model)


def test_directory_that_is_not_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(
        ["run", "--model", tmp_path / "empty", "--method", "magnitude", "--output", tmp_path / "o"]
    )
    assert_one_line_error(code, err, "config.json")


def test_not_a_causal_lm(tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    bert = tmp_path / "bert"
    BertForMaskedLM(
        BertConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, vocab_size=99
        )
    ).save_pretrained(bert)
    code, _, err = run_cli(["run", "--model", bert, "--method", "magnitude", "--output", tmp_path / "o"])
    assert_one_line_error(code, err, "not a causal", "BertForMaskedLM")


def test_broken_model_files(tmp_path, tiny_llama_dir):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_llama_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    code, _, err = run_cli(["run", "--model", broken, "--method", "magnitude", "--output", tmp_path / "o"])
    assert_one_line_error(code, err, "cannot load")
    (broken / "config.json").write_text("{not json")
    code, _, err = run_cli(["run", "--model", broken, "--method", "magnitude", "--output", tmp_path / "o"])
    assert_one_line_error(code, err, "config.json")


def test_include_that_matches_nothing(tiny_llama_dir, tmp_path):
    code, _, err = run_cli(
        [
            "run",
            "--model",
            tiny_llama_dir,
            "--method",
            "magnitude",
            "--include",
            "lm_head",
            "--output",
            tmp_path / "o",
        ]
    )
    assert_one_line_error(code, err, "no linear layer")


def test_pattern_that_does_not_divide_the_width(tiny_llama_dir, tmp_path):
    code, _, err = run_cli(
        [
            "run",
            "--model",
            tiny_llama_dir,
            "--method",
            "magnitude",
            "--pattern",
            "2:3",
            "--output",
            tmp_path / "o",
        ]
    )
    assert_one_line_error(code, err, "divisible by 3")


@pytest.mark.skipif(
    importlib.util.find_spec("prune_jobs.quantize") is not None,
    reason="the quantization schemes are installed",
)
def test_quant_without_the_quantization_module(base):
    code, _, err = run_cli(base + ["--method", "wanda", "--quant", "int8"])
    assert_one_line_error(code, err, "--quant", "quantize")


@pytest.mark.skipif(importlib.util.find_spec("datasets") is not None, reason="datasets is installed")
def test_dataset_calibration_without_datasets(tiny_llama_dir, tmp_path):
    code, _, err = run_cli(
        [
            "run",
            "--model",
            tiny_llama_dir,
            "--method",
            "wanda",
            "--calibration",
            "dataset:wikitext",
            "--output",
            tmp_path / "o",
        ]
    )
    assert_one_line_error(code, err, "datasets", "pip install datasets")


def test_eval_sweep_and_compare_masks_errors(tiny_llama_dir, calib_text, tmp_path):
    code, _, err = run_cli(["eval", "--model", tiny_llama_dir, "--text", tmp_path / "missing.txt"])
    assert_one_line_error(code, err, "--text")
    sweep = [
        "sweep",
        "--model",
        tiny_llama_dir,
        "--method",
        "wanda",
        "--calibration",
        calib_text,
        "--eval-text",
        calib_text,
        "--output",
        tmp_path / "sw",
    ]
    assert_one_line_error(*run_cli(sweep + ["--sparsities", "0.2,x"])[::2], "--sparsities")
    assert_one_line_error(*run_cli(sweep + ["--sparsities", "0.2,1.2"])[::2], "--sparsities", "(0, 1)")
    assert_one_line_error(*run_cli(sweep + ["--sparsities", "0.5", "--pattern", "2:4"])[::2], "--pattern")
    code, _, err = run_cli(["compare-masks", tmp_path, tiny_llama_dir])
    assert_one_line_error(code, err, "safetensors")
    code, _, err = run_cli(["compare-masks", tiny_llama_dir])
    assert_one_line_error(code, err, "dir_b")


def test_help_explains_every_option():
    for command in ("run", "eval", "sweep", "compare-masks", "fetch-model"):
        code, out, _ = run_cli([command, "--help"])
        assert code == 0 and "Usage" in out
    code, out, _ = run_cli(["run", "--help"])
    for option in (
        "--model",
        "--method",
        "--pattern",
        "--sparsity",
        "--quant",
        "--quant-group-size",
        "--calibration",
        "--calibration-samples",
        "--calibration-seqlen",
        "--output",
        "--eval-text",
        "--eval-windows",
        "--include",
        "--exclude",
        "--seed",
        "--overwrite",
        "--no-serve-marker",
    ):
        assert option in out, option
    assert "keeps N of every M" in " ".join(out.split()).replace("│", "").replace("  ", " ") or "keeps" in out


def test_a_real_process_prints_one_line_and_exits_2(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "prune_jobs",
            "run",
            "--model",
            "embedded:smollm2-135m",
            "--method",
            "wanda",
            "--pattern",
            "3:2",
            "--calibration",
            "self",
            "--output",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: --pattern")
    json.dumps(proc.stderr)  # plain text
