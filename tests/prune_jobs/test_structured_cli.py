"""Bad structured targets → one line `error: ...` on stderr naming the option, exit code 2, no traceback.
The tiny Llama has 2 layers, FFN width 512, 4 query heads on 2 KV heads (2 per group)."""

from __future__ import annotations

import pytest

from tests.prune_jobs.helpers import run_cli
from tests.prune_jobs.test_cli_errors import assert_one_line_error


@pytest.fixture
def base(tiny_llama_dir, calib_text, tmp_path):
    return [
        "run",
        "--model",
        tiny_llama_dir,
        "--calibration",
        calib_text,
        "--calibration-samples",
        "4",
        "--calibration-seqlen",
        "32",
        "--output",
        tmp_path / "out",
    ]


@pytest.mark.parametrize(
    "extra,needles",
    [
        # checked before the model is loaded
        (["--method", "depth"], ["--remove-layers", "--layers"]),
        (["--method", "depth", "--remove-layers", "0"], ["--remove-layers", "fraction in (0, 1)"]),
        (["--method", "depth", "--remove-layers", "-1"], ["--remove-layers"]),
        (["--method", "depth", "--remove-layers", "1.5"], ["--remove-layers", "whole"]),
        (["--method", "depth", "--remove-layers", "1", "--layers", "0"], ["not both"]),
        (["--method", "depth", "--layers", "a,b"], ["--layers", "comma"]),
        (["--method", "depth", "--layers", "0,0"], ["--layers", "twice"]),
        (["--method", "depth", "--remove-layers", "1", "--width", "0.5"], ["--width", "--method width"]),
        (["--method", "depth", "--remove-layers", "1", "--pattern", "2:4"], ["--pattern", "depth"]),
        (["--method", "depth", "--remove-layers", "1", "--sparsity", "0.5"], ["--sparsity"]),
        (["--method", "depth", "--remove-layers", "1", "--quant", "int8"], ["--quant"]),
        (["--method", "depth", "--remove-layers", "1", "--heal", "-2"], ["--heal", "at least 1"]),
        (["--method", "depth", "--remove-layers", "1", "--heal", "2", "--heal-lr", "0"], ["--heal-lr"]),
        (
            ["--method", "depth", "--remove-layers", "1", "--speed-rounds", "0", "--measure-speed"],
            ["--speed"],
        ),
        (["--method", "width"], ["--width", "--heads"]),
        (["--method", "width", "--width", "0"], ["--width", "(0, 1)"]),
        (["--method", "width", "--width", "1"], ["--width", "(0, 1)"]),
        (["--method", "width", "--width", "1.5"], ["--width", "(0, 1)"]),
        (["--method", "width", "--heads", "1"], ["--heads", "(0, 1)"]),
        (["--method", "width", "--width", "0.5", "--heads-mode", "rows"], ["--heads-mode", "queries"]),
        (["--method", "width", "--width", "0.5", "--remove-layers", "1"], ["--remove-layers", "depth"]),
        (["--method", "wanda", "--width", "0.5"], ["--width", "depth or width"]),
        (["--method", "wanda", "--heal", "10"], ["--heal", "depth or width"]),
        (["--method", "wanda", "--measure-speed"], ["--measure-speed", "depth or width"]),
        (["--method", "shallow"], ["--method", "depth, width"]),
        # checked against the model (2 layers, 4 heads on 2 KV heads)
        (["--method", "depth", "--remove-layers", "2"], ["--remove-layers 2", "all 2 decoder layers"]),
        (["--method", "depth", "--remove-layers", "0.99"], ["all 2 decoder layers"]),
        (["--method", "depth", "--remove-layers", "0.1"], ["rounds to 0"]),
        (["--method", "depth", "--layers", "0,1"], ["--layers", "all 2 decoder layers"]),
        (["--method", "depth", "--layers", "2"], ["--layers", "2 does not exist"]),
        (["--method", "width", "--width", "0.9999"], ["--width", "all 512"]),
        (["--method", "width", "--heads", "0.25"], ["--heads 0.25", "not divisible", "use --heads 0.5"]),
        (["--method", "width", "--heads", "0.75"], ["--heads 0.75", "not divisible"]),
        (
            ["--method", "width", "--heads", "0.25", "--heads-mode", "groups"],
            ["--heads 0.25", "whole KV groups", "use --heads 0.5"],
        ),
    ],
)
def test_bad_structured_targets(base, extra, needles):
    code, _, err = run_cli(base + extra)
    assert_one_line_error(code, err, *needles)


def test_depth_ranking_needs_calibration(tiny_llama_dir, tmp_path):
    code, _, err = run_cli(
        [
            "run",
            "--model",
            tiny_llama_dir,
            "--method",
            "depth",
            "--remove-layers",
            "1",
            "--output",
            tmp_path / "o",
        ]
    )
    assert_one_line_error(code, err, "--calibration", "depth")


def test_sweep_refuses_structured_methods(tiny_llama_dir, calib_text, tmp_path):
    code, _, err = run_cli(
        [
            "sweep",
            "--model",
            tiny_llama_dir,
            "--method",
            "width",
            "--sparsities",
            "0.5",
            "--eval-text",
            calib_text,
            "--output",
            tmp_path / "s",
        ]
    )
    assert_one_line_error(code, err, "--method width", "prune-jobs run")
