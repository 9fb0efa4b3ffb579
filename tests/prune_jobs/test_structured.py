"""Structured pruning on tiny real Llamas with a known answer: the lowest-importance layer / channels / heads
are the ones removed, the surgery is exact (logits unchanged when only dead parts go), the checkpoint is a
standard config that transformers reloads, and healing lowers the distillation loss."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from prune_jobs.report import PruneReport
from tests.prune_jobs.helpers import run_cli
from tests.prune_jobs.structured_models import (
    combine,
    kill_channels,
    logits,
    make_identity_layer,
    silence_kv_group,
    silence_query_heads,
    tiny_variant,
)

CALIBRATION = ["--calibration-samples", "8", "--calibration-seqlen", "64"]


@pytest.fixture(scope="module")
def four_layers_identity_2(tiny_llama_dir, tmp_path_factory):
    """4 layers; layer 2 is an identity (adds nothing to the residual stream)."""
    return tiny_variant(tiny_llama_dir, tmp_path_factory.mktemp("id2"), make_identity_layer(2), layers=4)


DEAD_CHANNELS = list(range(0, 512, 4))  # 128 of 512 = 25%


@pytest.fixture(scope="module")
def dead_parts(tiny_llama_dir, tmp_path_factory):
    """Every layer: FFN channels 0, 4, 8, ... never fire; query heads 1 (group 0) and 2 (group 1) silent."""
    edit = combine(kill_channels(DEAD_CHANNELS), silence_query_heads([1, 2]))
    return tiny_variant(tiny_llama_dir, tmp_path_factory.mktemp("dead"), edit)


def prune(source, out, calib_text, *options):
    code, _, err = run_cli(
        ["run", "--model", source, "--calibration", calib_text, *CALIBRATION, "--output", out, *options]
    )
    assert code == 0, err
    return PruneReport.read(out)


def test_depth_removes_the_identity_layer_and_keeps_the_function(
    four_layers_identity_2, calib_text, tmp_path
):
    out = tmp_path / "depth"
    report = prune(four_layers_identity_2, out, calib_text, "--method", "depth", "--remove-layers", "1")
    influence = report.structured.block_influence
    assert report.structured.removed_layers == [2]
    assert influence[2] == pytest.approx(0.0, abs=1e-6) and min(influence[:2] + influence[3:]) > 1e-3
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 3
    assert torch.allclose(logits(out), logits(four_layers_identity_2), atol=1e-5)
    # the survivors are the original layers 0, 1, 3 renumbered 0, 1, 2
    from safetensors.torch import load_file

    before, after = (
        load_file(four_layers_identity_2 / "model.safetensors"),
        load_file(out / "model.safetensors"),
    )
    key = "model.layers.{}.self_attn.q_proj.weight"
    assert torch.equal(after[key.format(2)], before[key.format(3)])
    assert key.format(3) not in after
    assert report.method == "depth" and report.pattern == "structured" and report.variant == "depth-25%"
    s = report.structured
    assert (s.layers_before, s.layers_after) == (4, 3)
    assert s.decoder_linear_parameters_after == s.decoder_linear_parameters_before * 3 // 4
    assert report.sparsity == pytest.approx(0.25)
    assert report.model.parameters == s.parameters_after < s.parameters_before


def test_block_influence_matches_hidden_states(four_layers_identity_2, calib_text, tmp_path):
    """BI_i = 1 − mean cos(h_i, h_{i+1}) recomputed from transformers' own hidden states."""
    from transformers import AutoModelForCausalLM

    from prune_jobs.calibration import random_windows, tokenize_as_one_string

    report = prune(
        four_layers_identity_2, tmp_path / "d", calib_text, "--method", "depth", "--remove-layers", "0.5"
    )
    model = AutoModelForCausalLM.from_pretrained(four_layers_identity_2, dtype=torch.float32)
    from transformers import AutoTokenizer

    tokens = tokenize_as_one_string(
        AutoTokenizer.from_pretrained(four_layers_identity_2), calib_text.read_text()
    )
    ids = random_windows(tokens, 8, 64, 0)
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
    for i in range(3):  # the last entry is after the final norm
        expected = 1 - float(F.cosine_similarity(hidden[i], hidden[i + 1], dim=-1).mean())
        assert report.structured.block_influence[i] == pytest.approx(expected, abs=1e-4)
    ranked = sorted(range(4), key=lambda i: report.structured.block_influence[i])
    assert report.structured.removed_layers == sorted(ranked[:2])


def test_explicit_layers_need_no_calibration(four_layers_identity_2, tmp_path):
    out = tmp_path / "explicit"
    code, _, err = run_cli(
        ["run", "--model", four_layers_identity_2, "--method", "depth", "--layers", "0,3", "--output", out]
    )
    assert code == 0, err
    report = PruneReport.read(out)
    assert report.structured.removed_layers == [0, 3] and report.structured.block_influence is None
    assert report.calibration is None and report.variant == "depth-50%"


def test_width_removes_dead_channels_and_silent_heads_exactly(dead_parts, calib_text, tmp_path):
    out = tmp_path / "width"
    report = prune(dead_parts, out, calib_text, "--method", "width", "--width", "0.25", "--heads", "0.5")
    config = json.loads((out / "config.json").read_text())
    assert (config["intermediate_size"], config["num_attention_heads"], config["num_key_value_heads"]) == (
        384,
        2,
        2,
    )
    assert config["head_dim"] == 64 and config["hidden_size"] == 256
    assert torch.allclose(logits(out), logits(dead_parts), atol=1e-4)
    assert report.variant == "width-25%-heads-50%"
    s = report.structured
    assert (s.intermediate_size_before, s.intermediate_size_after) == (512, 384)
    assert (s.attention_heads_before, s.attention_heads_after, s.kv_heads_after) == (4, 2, 2)
    assert s.heads_mode == "queries"


def test_width_channel_choice_is_activation_aware(dead_parts, calib_text, tmp_path):
    """The kept channels are exactly the live ones (their down_proj columns survive, in order)."""
    from safetensors.torch import load_file

    out = tmp_path / "w"
    prune(dead_parts, out, calib_text, "--method", "width", "--width", "0.25")
    before, after = load_file(dead_parts / "model.safetensors"), load_file(out / "model.safetensors")
    live = [c for c in range(512) if c not in set(DEAD_CHANNELS)]
    for layer in range(2):
        key = f"model.layers.{layer}.mlp.down_proj.weight"
        assert torch.equal(after[key], before[key][:, live])
        key = f"model.layers.{layer}.mlp.up_proj.weight"
        assert torch.equal(after[key], before[key][live])


def test_width_removes_a_whole_silent_kv_group(tiny_llama_dir, calib_text, tmp_path_factory):
    source = tiny_variant(tiny_llama_dir, tmp_path_factory.mktemp("kv"), silence_kv_group(0))
    out = tmp_path_factory.mktemp("out") / "groups"
    report = prune(source, out, calib_text, "--method", "width", "--heads", "0.5", "--heads-mode", "groups")
    config = json.loads((out / "config.json").read_text())
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["intermediate_size"]) == (
        2,
        1,
        512,
    )
    assert torch.allclose(logits(out), logits(source), atol=1e-4)
    assert report.structured.heads_mode == "groups" and report.variant == "width-heads-50%"


def test_heal_lowers_the_distillation_loss(tiny_llama_dir, calib_text):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prune_jobs.calibration import random_windows, tokenize_as_one_string
    from prune_jobs.model_io import decoder_layers
    from prune_jobs.structured.depth import drop_layers
    from prune_jobs.structured.heal import heal
    from prune_jobs.structured.rebuild import rebuild_model
    from prune_jobs.structured.spec import HealConfig

    teacher = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    prefix, _ = decoder_layers(teacher)
    state, config = drop_layers(teacher.state_dict(), teacher.config, prefix, [1])
    student = rebuild_model(teacher, config, state)
    tokens = tokenize_as_one_string(AutoTokenizer.from_pretrained(tiny_llama_dir), calib_text.read_text())
    windows = random_windows(tokens, 8, 64, 0)
    embeddings = student.get_input_embeddings().weight.detach().clone()
    result = heal(student, teacher, windows, HealConfig(steps=12, lr=3e-3, batch=2), progress=False)
    assert len(result.losses) == 12 and result.tokens == 12 * 2 * 64
    assert result.kl_after < 0.8 * result.kl_before, result
    assert torch.equal(student.get_input_embeddings().weight, embeddings)  # frozen


def test_heal_through_the_cli_records_curve_and_plot(four_layers_identity_2, calib_text, tmp_path):
    out = tmp_path / "healed"
    report = prune(
        four_layers_identity_2,
        out,
        calib_text,
        "--method",
        "depth",
        "--remove-layers",
        "2",
        "--heal",
        "3",
        "--heal-lr",
        "1e-3",
        "--eval-text",
        calib_text,
        "--eval-windows",
        "2",
        "--eval-seqlen",
        "128",
    )
    heal = report.heal
    assert heal.steps == 3 and len(heal.loss) == 3 and heal.tokens == 3 * 64 and heal.seqlen == 64
    assert heal.plot == "heal_loss.png" and (out / heal.plot).read_bytes()[:4] == b"\x89PNG"
    assert report.variant == "depth-50%-healed"
    assert report.structured.perplexity_before_heal is not None and report.perplexity.pruned > 0
    assert report.timings_s["heal"] > 0
