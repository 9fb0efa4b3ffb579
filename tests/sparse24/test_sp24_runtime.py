"""The CPU-testable parts of the runtime: the dispatch op, the measuring loop (with injected timings) and
the environment settings. The sparse kernels themselves only run on a GPU (benchmarks/gpu)."""

import itertools

import pytest
import torch

import sparse24.measure as measure
from sparse24.backends import BackendSet, DenseBackend
from sparse24.dispatch import DeviceKey, DispatchTable, select
from sparse24.ops import KERNEL_IDS, sp24_linear, table_arguments
from sparse24.pattern import prune_24
from sparse24.settings import Sparse24Settings

EMPTY = torch.empty(0)


def test_op_runs_the_dense_choice_and_picks_buckets():
    w = prune_24(torch.randn(48, 64))
    for m in (1, 3, 40):
        x = torch.randn(m, 64)
        y = torch.ops.sparsefleet.sp24_linear(
            x, w, EMPTY, EMPTY, EMPTY, 48, 64, [1, 4, 8], [0, 0, 0], [0, 0, 0]
        )
        torch.testing.assert_close(y, x @ w.T)


def test_op_has_a_shape_only_fake_for_torch_compile():
    w = prune_24(torch.randn(48, 64))
    torch.library.opcheck(
        sp24_linear, (torch.randn(5, 64), w, EMPTY, EMPTY, EMPTY, 48, 64, [1, 8], [0, 0], [0, 0])
    )
    compiled = torch.compile(
        lambda x: sp24_linear(x, w, EMPTY, EMPTY, EMPTY, 48, 64, [8], [0], [0]), fullgraph=True
    )
    x = torch.randn(6, 64)
    torch.testing.assert_close(compiled(x), x @ w.T)


def test_table_arguments_encode_the_choices():
    device = DeviceKey("gpu", "9.0", "t", "c", "s", "k")
    choices = select(
        {
            1: [measure.Candidate("dense", 9.0), measure.Candidate("mma_sp", 5.0, 2)],
            512: [measure.Candidate("dense", 90.0), measure.Candidate("cusparselt", 70.0, 7)],
        }
    )
    assert table_arguments(DispatchTable(8, 8, "bfloat16", device, choices)) == (
        [1, 512],
        [KERNEL_IDS["mma_sp"], KERNEL_IDS["cusparselt"]],
        [2, 7],
    )


class _Scaled(DenseBackend):
    """A 'sparse' backend that computes the wrong thing: the measuring loop must refuse to choose it."""

    name = "mma_sp"

    def run(self, state, x, variant):
        return 2 * super().run(state, x, variant)


class _Exact(DenseBackend):
    name = "cusparselt"


def test_measuring_loop_checks_results_and_records_times(monkeypatch):
    fake_times = itertools.count(start=10.0, step=-1.0)  # later measurements look faster
    ran = []

    def fake_graph_time(calls, repeats=15):
        for call in calls:
            ran.append(call())
        return next(fake_times)

    monkeypatch.setattr(measure, "graph_time_us", fake_graph_time)
    monkeypatch.setattr(measure, "rotation_copies", lambda nbytes, device=None: 3)
    weight = prune_24(torch.randn(32, 64))
    result = measure.measure_shape(weight, BackendSet((DenseBackend(), _Exact(), _Scaled())), buckets=(1, 16))
    assert set(result.timings) == {1, 16}
    assert "wrong result" in result.excluded["mma_sp"]
    assert all({c.kernel for c in cands} == {"dense", "cusparselt"} for cands in result.timings.values())
    assert len(ran) == 2 * 2 * 3 and all(
        out.shape[1] == 32 for out in ran
    )  # 2 buckets × 2 kernels × 3 copies
    table = measure.build_table(result, DeviceKey("gpu", "9.0", "t", "c", "s", "k"))
    assert table.kernels() == {"cusparselt"} and table.dtype == "float32"


def test_settings_from_env(tmp_path):
    s = Sparse24Settings.from_env(
        {
            "SPARSEFLEET_CACHE": str(tmp_path),
            "SPARSEFLEET_SP24_KERNELS": "dense,mma_sp",
            "SPARSEFLEET_SP24_TOLERANCE": "0.95",
            "SPARSEFLEET_SP24_REMEASURE": "1",
        }
    )
    assert (s.cache_root, s.kernels, s.tolerance, s.remeasure) == (tmp_path, ("dense", "mma_sp"), 0.95, True)
    assert Sparse24Settings.from_env({}).accelerate
    assert not Sparse24Settings.from_env({"SPARSEFLEET_SP24_KERNELS": "dense"}).accelerate


@pytest.mark.parametrize(
    "env,fragment",
    [
        ({"SPARSEFLEET_SP24_KERNELS": "dense,fast"}, "SPARSEFLEET_SP24_KERNELS"),
        ({"SPARSEFLEET_SP24_TOLERANCE": "2"}, "SPARSEFLEET_SP24_TOLERANCE"),
        ({"SPARSEFLEET_SP24_TOLERANCE": "abc"}, "(0, 1]"),
    ],
)
def test_bad_settings_are_named(env, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace("]", r"\]")):
        Sparse24Settings.from_env(env)


def test_named_backend_sets_always_include_dense():
    assert [b.name for b in BackendSet.named(("mma_sp",)).backends] == ["dense", "mma_sp"]
    with pytest.raises(ValueError, match="unknown kernel"):
        BackendSet.named(("dense", "turbo"))
