"""Build check of the CUDA kernel with nvcc (installed on CI machines; skipped where it is not).

The kernel runs only on a GPU; here it must compile for Ampere and Hopper, emit the sparse tensor-core
instruction and the streaming 16-byte weight loads it is designed around, and keep its accumulators in
registers for the variants the dispatcher uses.
"""

import re
import shutil
import subprocess
from importlib import resources

import pytest

from sparse24.kernel import (
    BLOCK_TILES,
    ROW_CONFIGS,
    ROWS_PREFETCH,
    block_variants,
    kernel_source,
    kernel_version,
    row_config_fits,
    token_tiles,
)

NVCC = shutil.which("nvcc")
pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc not installed")
SOURCE = resources.files("sparse24").joinpath("csrc/sp24_mma.cu")


def nvcc(tmp_path, *args: str) -> subprocess.CompletedProcess:
    cmd = [NVCC, "-std=c++17", "-DSP24_INSTANTIATE", *args, str(SOURCE)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_kernel_builds_for_ampere_and_hopper(tmp_path, arch):
    proc = nvcc(tmp_path, f"-arch={arch}", "-cubin", "-o", "k.cubin", "-Xptxas", "-v")
    assert (tmp_path / "k.cubin").stat().st_size > 0
    entries = re.findall(r"Compiling entry function '(\w+)'", proc.stderr)
    # {bf16, f16} × (8 (MT, NTB) k-slice variants + every (MT, PF, layout) row-group one the launcher uses)
    rows = {
        (token_tiles(m), pf, *ROW_CONFIGS[c])
        for m in (1, 16, 32)
        for pf in ROWS_PREFETCH
        for c in ROW_CONFIGS
        if row_config_fits(m, c)
    }
    assert len(entries) == 2 * (8 + len(rows))
    found = re.findall(r"sp24_mma_rowsILb1ELi(\d)ELi(\d)ELi(\d)ELi(\d)ELi(\d)E", " ".join(entries))
    assert {tuple(int(v) for v in f) for f in found} == rows
    # no local-memory stack frames beyond a few bytes: the fragments stay in registers
    frames = [int(b) for b in re.findall(r"(\d+) bytes stack frame", proc.stderr)]
    assert frames and max(frames) <= 16, proc.stderr


def test_ptx_uses_sparse_mma_and_streaming_loads(tmp_path):
    nvcc(tmp_path, "-arch=sm_90", "-ptx", "-o", "k.ptx")
    ptx = (tmp_path / "k.ptx").read_text()
    assert "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.bf16.bf16.f32" in ptx
    assert "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.f16.f16.f32" in ptx
    assert "ld.global.nc.L1::no_allocate.v4.u32" in ptx  # one 16-byte load per lane per tile
    assert "ld.global.nc.L1::no_allocate.v2.u32" in ptx  # one 8-byte metadata load per 4 tiles
    assert re.search(r"mma\.sp[^\n]*, 1;", ptx) and re.search(r"mma\.sp[^\n]*, 0;", ptx)  # both selectors
    # row-group kernel: x staged by 16-byte async copies (zero-filled past M/K), B fragments by ldmatrix
    assert "cp.async.cg.shared.global" in ptx and "ldmatrix.sync.aligned.m8n8.x4.shared.b16" in ptx


def test_instantiated_variants_match_the_launcher():
    text = kernel_source()
    instances = set(re.findall(r"SP24_INST\(true, (\d), (\d)\)", text))
    expected = {(str(token_tiles(m)), str(ntb)) for m in (1, 16, 32) for ntb in block_variants(m)}
    assert instances == expected and set(BLOCK_TILES) == {1, 2, 4}
    assert "SP24_INST_ROWS_ALL(true)" in text and "SP24_INST_ROWS_ALL(false)" in text  # listed by the build
    assert len(kernel_version()) == 12
