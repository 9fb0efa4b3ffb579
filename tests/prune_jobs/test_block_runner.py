"""The two block schedules on the tiny Llama: same outputs as running the pruned blocks directly, the
sequential schedule's statistics come from already pruned upstream layers, failures do not hang."""

from __future__ import annotations

import copy
import threading

import pytest
import torch

from prune_jobs.block_inputs import capture_block_inputs
from prune_jobs.block_runner import RUNNERS
from prune_jobs.masks import SparsityTarget
from prune_jobs.methods import METHODS
from prune_jobs.model_io import decoder_layers, layer_linears, load_causal_lm
from prune_jobs.stats import LinearStats

HALF = SparsityTarget.of(None, 0.5)


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    model, _ = load_causal_lm(tiny_llama_dir)
    ids = torch.randint(0, 1000, (8, 32), generator=torch.Generator().manual_seed(0))
    return model, ids


def prune_all(model, ids, mode, record=None):
    """Magnitude-prune every block with `mode`; returns final hidden states and recorded stats."""
    name, blocks = decoder_layers(model)
    inputs = capture_block_inputs(model, blocks[0], ids, batch_size=2)  # 4 batches → 4 threads

    def prune(lin_name, linear, stats):
        if record is not None:
            record[lin_name] = stats
        new = METHODS["magnitude"].prune(linear.weight.detach(), stats, HALF, None)
        with torch.no_grad():
            linear.weight.copy_(new)

    for index, block in enumerate(blocks):
        RUNNERS[mode](
            block,
            inputs,
            layer_linears(block, f"{name}.{index}"),
            lambda d: LinearStats(d, full_hessian=True),
            prune,
        )
    return torch.cat(inputs.hidden)


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_outputs_equal_the_pruned_blocks_run_directly(tiny, mode):
    model, ids = tiny
    model = copy.deepcopy(model)
    hidden = prune_all(model, ids, mode)
    # reference: the pruned model's own forward up to the last block
    name, blocks = decoder_layers(model)
    captured = {}
    handle = blocks[-1].register_forward_hook(lambda m, a, out: captured.setdefault("out", out))
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)
    handle.remove()
    out = captured["out"][0] if isinstance(captured["out"], tuple) else captured["out"]
    assert torch.allclose(hidden, out, atol=1e-4)


def test_sequential_statistics_see_the_pruned_upstream_layers(tiny):
    model, ids = tiny
    sequential, reference = {}, {}
    prune_all(copy.deepcopy(model), ids, "sequential", sequential)
    # magnitude masks do not depend on data, so pruning everything first and then collecting statistics
    # with the dense-input (parallel) schedule sees exactly the inputs the sequential schedule must have seen
    pre_pruned = copy.deepcopy(model)
    for module in pre_pruned.modules():
        if isinstance(module, torch.nn.Linear) and module is not pre_pruned.get_output_embeddings():
            with torch.no_grad():
                module.weight.copy_(METHODS["magnitude"].prune(module.weight.detach(), None, HALF, None))
    prune_all(pre_pruned, ids, "parallel", reference)
    assert sequential.keys() == reference.keys() and len(sequential) == 14
    for name in sequential:
        assert sequential[name].tokens == 8 * 32, name
        assert torch.allclose(sequential[name].hessian(), reference[name].hessian(), rtol=1e-4, atol=1e-5), (
            name
        )
    # q/k/v and gate/up share one accumulator
    q, k, v = (sequential[f"model.layers.0.self_attn.{p}_proj"] for p in "qkv")
    assert q is k is v
    assert sequential["model.layers.1.mlp.gate_proj"] is sequential["model.layers.1.mlp.up_proj"]


def test_sequential_schedule_reports_failures_instead_of_hanging(tiny):
    model, ids = tiny
    model = copy.deepcopy(model)
    name, blocks = decoder_layers(model)
    inputs = capture_block_inputs(model, blocks[0], ids, batch_size=2)

    def failing(lin_name, linear, stats):
        if lin_name.endswith("o_proj"):
            raise ValueError("boom at o_proj")

    outcome = {}

    def target():
        try:
            RUNNERS["sequential"](
                blocks[0],
                inputs,
                layer_linears(blocks[0], f"{name}.0"),
                lambda d: LinearStats(d, full_hessian=False),
                failing,
            )
        except Exception as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the sequential schedule hung"
    assert isinstance(outcome.get("error"), ValueError) and "o_proj" in str(outcome["error"])


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_the_last_block_can_skip_its_outputs(tiny, mode):
    """Without a next block, batches stop after the last linear layer; the pruning is the same."""
    model, ids = tiny
    results = []
    for need_outputs in (True, False):
        copy_ = copy.deepcopy(model)
        name, blocks = decoder_layers(copy_)
        inputs = capture_block_inputs(copy_, blocks[0], ids, batch_size=2)
        linears = layer_linears(blocks[0], f"{name}.0")

        def prune(lin_name, linear, stats):
            new = METHODS["wanda"].prune(linear.weight.detach(), stats, HALF, None)
            with torch.no_grad():
                linear.weight.copy_(new)

        before = [h.clone() for h in inputs.hidden]
        RUNNERS[mode](
            blocks[0],
            inputs,
            linears,
            lambda d: LinearStats(d, full_hessian=False),
            prune,
            need_outputs=need_outputs,
        )
        changed = any(not torch.equal(a, b) for a, b in zip(before, inputs.hidden, strict=True))
        assert changed == need_outputs
        results.append({n: m.weight.detach().clone() for n, m in linears.items()})
    assert all(torch.equal(results[0][n], results[1][n]) for n in results[0])
