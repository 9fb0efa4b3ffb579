"""prune-jobs sweep on the tiny Llama, and the essential-sparsity rule."""

from __future__ import annotations

import json

from prune_jobs.sweep import SweepPoint, essential_sparsity
from tests.prune_jobs.helpers import run_cli


def point(s: float, ppl: float) -> SweepPoint:
    return SweepPoint(
        sparsity=s,
        perplexity=ppl,
        mean_relative_output_error=None,
        max_relative_output_error=None,
        prune_s=0.0,
    )


def test_essential_sparsity_is_the_end_of_the_flat_part():
    points = [point(0.1, 10.0), point(0.2, 10.05), point(0.3, 10.09), point(0.4, 10.5), point(0.5, 10.08)]
    assert essential_sparsity(10.0, points, 0.01) == 0.3  # 0.5 is back within 1% but 0.4 left it
    assert essential_sparsity(10.0, points, 0.1) == 0.5
    assert essential_sparsity(10.0, [point(0.1, 12.0)], 0.01) == 0.0


def test_sweep_writes_curve_plot_and_essential_sparsity(tmp_path, tiny_llama_dir, calib_text):
    out = tmp_path / "sweep"
    code, stdout, err = run_cli(
        [
            "sweep",
            "--model",
            tiny_llama_dir,
            "--method",
            "wanda",
            "--sparsities",
            "0.6,0.2",
            "--calibration",
            calib_text,
            "--calibration-samples",
            "4",
            "--calibration-seqlen",
            "64",
            "--eval-text",
            calib_text,
            "--eval-windows",
            "2",
            "--eval-seqlen",
            "128",
            "--tolerance",
            "0.05",
            "--output",
            out,
        ]
    )
    assert code == 0, err
    result = json.loads((out / "sweep.json").read_text())
    assert [p["sparsity"] for p in result["points"]] == [0.2, 0.6]
    assert all(p["perplexity"] > 0 and p["mean_relative_output_error"] > 0 for p in result["points"])
    # the deeper sparsity damages the layers more
    assert (
        result["points"][1]["mean_relative_output_error"] > result["points"][0]["mean_relative_output_error"]
    )
    points = [SweepPoint(**p) for p in result["points"]]
    assert result["essential_sparsity"] == essential_sparsity(result["dense_perplexity"], points, 0.05)
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(out / "sweep.json") in stdout
