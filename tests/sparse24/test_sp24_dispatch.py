"""Kernel selection from injected timings, bucket lookup and the on-disk table cache (no GPU needed)."""

import dataclasses

import pytest

from sparse24.dispatch import (
    Candidate,
    DeviceKey,
    DispatchTable,
    bucket_index,
    load_table,
    save_table,
    select,
    table_path,
)

DEVICE = DeviceKey("NVIDIA H100 80GB HBM3", "9.0", "2.11.0+cu130", "13.0", "800", "abc123def456")


def timings(**per_bucket: dict[str, float]) -> dict[int, list[Candidate]]:
    out = {}
    for key, kernels in per_bucket.items():
        out[int(key[1:])] = [
            Candidate(k.split("/")[0], t, int(k.split("/")[1]) if "/" in k else 0) for k, t in kernels.items()
        ]
    return out


def test_fastest_kernel_wins_each_bucket():
    t = timings(
        m1={"dense": 10.0, "cusparselt": 14.0, "mma_sp/2": 6.0, "mma_sp/1": 6.5},
        m64={"dense": 20.0, "cusparselt": 19.0},
        m4096={"dense": 900.0, "cusparselt": 600.0},
    )
    choices = select(t)
    assert [(c.m, c.kernel, c.variant) for c in choices] == [
        (1, "mma_sp", 2),
        (64, "cusparselt", 0),
        (4096, "cusparselt", 0),
    ]
    assert choices[0].speedup == pytest.approx(10 / 6) and choices[2].dense_us == 900.0


def test_dense_copy_is_dropped_when_sparse_is_within_tolerance():
    # dense is 1% faster at M=64: serving it would keep a dense copy for 1%, so a sparse kernel takes it
    t = timings(
        m1={"dense": 10.0, "mma_sp/1": 6.0}, m64={"dense": 19.8, "cusparselt": 20.0, "mma_sp/1": 30.0}
    )
    choices = select(t)
    assert {c.kernel for c in choices} == {"mma_sp", "cusparselt"}
    assert all(c.speedup >= 0.98 for c in choices)


def test_dense_is_kept_when_sparse_would_be_slower_than_tolerance():
    t = timings(m1={"dense": 10.0, "mma_sp/1": 6.0}, m64={"dense": 19.0, "cusparselt": 20.0})
    assert [c.kernel for c in select(t)] == ["mma_sp", "dense"]
    assert [c.kernel for c in select(t, tolerance=0.9)] == ["mma_sp", "cusparselt"]


def test_one_sparse_format_preferred_over_two_when_close():
    t = timings(
        m1={"dense": 10.0, "cusparselt": 6.1, "mma_sp/1": 6.0}, m64={"dense": 30.0, "cusparselt": 20.0}
    )
    assert {c.kernel for c in select(t)} == {"cusparselt"}  # 2% slower at M=1 saves a second sparse copy


def test_no_bucket_falls_below_tolerance_of_dense():
    t = timings(m1={"dense": 10.0, "cusparselt": 40.0}, m2={"dense": 10.0, "cusparselt": 10.5})
    assert [c.kernel for c in select(t)] == ["dense", "dense"]


def test_select_rejects_bad_input():
    with pytest.raises(ValueError, match="no dense"):
        select({1: [Candidate("mma_sp", 1.0)]})
    with pytest.raises(ValueError, match="tolerance"):
        select(timings(m1={"dense": 1.0}), tolerance=1.5)
    with pytest.raises(ValueError, match="unknown kernel"):
        Candidate("magic", 1.0)
    with pytest.raises(ValueError, match="positive"):
        Candidate("dense", 0.0)


@pytest.mark.parametrize("m,index", [(1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (4096, 3), (10**6, 3)])
def test_bucket_lookup(m, index):
    assert bucket_index([1, 2, 4, 8192], m) == index


def test_bucket_lookup_rejects_empty_batches():
    with pytest.raises(ValueError):
        bucket_index([1, 2], 0)


def test_table_cache_round_trip_and_invalidation(tmp_path):
    table = DispatchTable(
        4096,
        4096,
        "bfloat16",
        DEVICE,
        select(timings(m1={"dense": 9.0, "mma_sp/4": 5.0}, m2048={"dense": 500.0})),
    )
    path = save_table(tmp_path, table)
    assert path == table_path(tmp_path, DEVICE, 4096, 4096, "bfloat16") and path.is_file()
    assert load_table(tmp_path, DEVICE, 4096, 4096, "bfloat16") == table
    assert table.choose(1).kernel == "mma_sp" and table.choose(100).kernel == "dense"
    assert table.kernels() == {"mma_sp", "dense"}
    # any change of device, versions, kernel source or shape is a miss
    newer_torch = dataclasses.replace(DEVICE, torch="2.12.0+cu130")
    assert load_table(tmp_path, newer_torch, 4096, 4096, "bfloat16") is None
    assert (
        load_table(tmp_path, dataclasses.replace(DEVICE, kernel="000000000000"), 4096, 4096, "bfloat16")
        is None
    )
    assert load_table(tmp_path, DEVICE, 4096, 14336, "bfloat16") is None
    path.write_text("{not json")
    assert load_table(tmp_path, DEVICE, 4096, 4096, "bfloat16") is None
