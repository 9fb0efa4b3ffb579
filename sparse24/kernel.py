"""Run the `mma.sp` kernel (`csrc/sp24_mma.cu`): compiled with NVRTC on first use for the local GPU.

NVRTC ships with CUDA builds of PyTorch, so serving needs no compiler and no build step; the source has no
includes. Launches go through the CUDA driver on the current stream, so they are captured by CUDA graphs.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
from importlib import resources

import torch

from sparse24.layout import PackedMmaSp

THREADS = 256  # SP24_WARPS · 32 in the source
MAX_TOKENS = 32
BLOCK_TILES = (1, 2, 4)  # k-slice kernel `sp24_mma_gemm`: NTB, row tiles of 16 per block (variant = NTB)
ROWS_KERNEL = 1000  # row-group kernel `sp24_mma_rows`: variant = 10·ROWS_KERNEL·C + ROWS_KERNEL·PF + S
ROWS_PREFETCH = (1, 2)  # PF: weight prefetch distance in k-blocks
# C: warp layout of the row-group kernel, (RW row lanes, KW k lanes, NTW row tiles per warp); a block
# covers RW·NTW row tiles and splits its K slice KW ways inside the block. C = 0 is the original layout.
ROW_CONFIGS = {0: (8, 1, 1), 1: (4, 2, 1), 2: (4, 2, 2), 3: (8, 1, 2), 4: (2, 4, 2)}
ROW_GROUP = 8  # row tiles per block of the row-group kernel with C = 0
MAX_ROW_GROUPS = 1 << 16  # completion counters kept per device (one per row group)


class KernelUnavailable(RuntimeError):
    """The kernel cannot run here (no CUDA, GPU older than sm_80, no NVRTC); the message says which."""


@functools.cache
def kernel_source() -> str:
    return resources.files("sparse24").joinpath("csrc/sp24_mma.cu").read_text()


def kernel_version() -> str:
    return hashlib.sha256(kernel_source().encode()).hexdigest()[:12]


def token_tiles(m: int) -> int:
    """Token tiles of 8 (template MT) for a batch of m tokens."""
    if not 1 <= m <= MAX_TOKENS:
        raise ValueError(f"the mma.sp kernel takes 1..{MAX_TOKENS} tokens, got {m}")
    return 1 if m <= 8 else 2 if m <= 16 else 4


def block_variants(m: int) -> tuple[int, ...]:
    """NTB values of the k-slice kernel for this M; MT·NTB <= 8 keeps the accumulators in registers."""
    mt = token_tiles(m)
    return tuple(ntb for ntb in BLOCK_TILES if mt * ntb <= 8)


def row_group(config: int = 0) -> int:
    """Row tiles per block of the row-group kernel with warp layout `config`."""
    rw, _, ntw = ROW_CONFIGS[config]
    return rw * ntw


def row_config_fits(m: int, config: int) -> bool:
    """The double-buffered x staging (2·KW k-blocks of 8·MT rows) must fit 48 KB of static shared memory."""
    return ROW_CONFIGS[config][1] * token_tiles(m) <= 8


def row_splits(n_tiles: int, k_blocks: int, sms: int = 132, config: int = 0) -> tuple[int, ...]:
    """K-slice counts S worth timing for the row-group kernel: about 2 blocks per SM, half and twice that."""
    groups = -(-n_tiles // row_group(config))
    base = max(1, -(-2 * sms // groups))
    picks = {base // 2, base, 2 * base}
    # Plus the two divisors of KB in [base/2, 2·base] closest to base: equal slices won every measured
    # narrow-layer cell (8B qkv/o: S = 4 or 8 of 32 k-blocks, 5-15% faster than S = 3, 6, 9).
    divisors = [d for d in range(-(-base // 2), 2 * base + 1) if k_blocks % d == 0]
    picks |= set(sorted(divisors, key=lambda d: (abs(d - base), d))[:2])
    return tuple(sorted({max(1, min(k_blocks, s)) for s in picks}))


def rows_variant(splits: int, prefetch: int = 1, config: int = 0) -> int:
    """The variant number of the row-group kernel with K split `splits` ways, prefetch distance PF and warp
    layout `config` (ROW_CONFIGS)."""
    if prefetch not in ROWS_PREFETCH or not 1 <= splits < ROWS_KERNEL or config not in ROW_CONFIGS:
        raise ValueError(f"no row-group variant with {splits} slices, prefetch {prefetch}, layout {config}")
    return 10 * ROWS_KERNEL * config + ROWS_KERNEL * prefetch + splits


def rows_parts(variant: int) -> tuple[int, int, int]:
    """(S, PF, C) of a row-group variant number."""
    return variant % ROWS_KERNEL, variant // ROWS_KERNEL % 10, variant // (10 * ROWS_KERNEL)


def variants(m: int, n_tiles: int, k_blocks: int, k: int, sms: int = 132) -> list[int]:
    """Every launch variant for M tokens: k-slice NTB values, then the row-group kernel's (S, PF) pairs
    (K % 8 == 0 only)."""
    found = [ntb for ntb in block_variants(m) if n_tiles % ntb == 0]
    if k % 8 == 0:
        for config in ROW_CONFIGS:
            if not row_config_fits(m, config) or -(-n_tiles // row_group(config)) > MAX_ROW_GROUPS:
                continue
            splits = row_splits(n_tiles, k_blocks, sms, config)
            found += [rows_variant(s, pf, config) for pf in ROWS_PREFETCH for s in splits]
    return found


def check_available(device: torch.device | None = None) -> None:
    """Raise KernelUnavailable unless the kernel can be compiled and loaded here (compiles one variant)."""
    if not torch.cuda.is_available():
        raise KernelUnavailable("no CUDA device")
    major, minor = torch.cuda.get_device_capability(device)
    if major < 8:
        raise KernelUnavailable(f"sparse tensor cores need sm_80 or newer, this GPU is sm_{major}{minor}")
    precompile(torch.bfloat16, 1, 1, device)


def precompile(dtype: torch.dtype, m: int, variant: int, device: torch.device | None = None) -> None:
    """Compile and load the variant serving m tokens now: module loading is not allowed while a CUDA graph
    is being captured, and a table read from the disk cache has not run any kernel yet."""
    try:
        _compiled(dtype == torch.bfloat16, token_tiles(m), _family(variant), _arch(device))
        if variant >= ROWS_KERNEL:
            index = device.index if device is not None and device.index is not None else None
            _counters(torch.device("cuda", torch.cuda.current_device() if index is None else index))
    except (ImportError, AttributeError, OSError) as exc:  # private torch.cuda._utils API moved or missing
        raise KernelUnavailable(f"cannot load CUDA modules through torch ({exc})") from exc


def mma_sp_linear(x: torch.Tensor, packed: PackedMmaSp, variant: int = 1) -> torch.Tensor:
    """y = x @ W.T for x [M, K] with M <= 32, W the packed 2:4 weight; returns [M, N] in x.dtype.

    `variant` < ROWS_KERNEL: the k-slice kernel with that many row tiles per block; `rows_variant(S, PF, C)`:
    the row-group kernel with K split S ways, weights prefetched PF k-blocks ahead, warp layout C."""
    if x.dim() != 2 or x.shape[1] != packed.k:
        raise ValueError(f"x must be [M, {packed.k}], got {tuple(x.shape)}")
    if x.dtype != packed.dtype:
        raise ValueError(f"x is {x.dtype}, the weight {packed.dtype}")
    m = x.shape[0]
    mt = token_tiles(m)
    x = x.contiguous()
    y = torch.empty(m, packed.n, dtype=x.dtype, device=x.device)
    kernel = _compiled(x.dtype == torch.bfloat16, mt, _family(variant), _arch(x.device))
    if variant < ROWS_KERNEL:
        if variant not in block_variants(m) or packed.n_tiles % variant:
            raise ValueError(f"block_tiles={variant} is not a compiled variant for M={m}")
        kernel(
            grid=(packed.n_tiles // variant, 1, 1),
            block=(THREADS, 1, 1),
            args=[packed.values, packed.meta, x, y, m, packed.n, packed.k, packed.k_blocks],
        )
        return y
    splits, _, config = rows_parts(variant)
    groups = -(-packed.n_tiles // row_group(config))
    if (
        not 1 <= splits <= packed.k_blocks
        or packed.k % 8
        or groups > MAX_ROW_GROUPS
        or not row_config_fits(m, config)
        or packed.n_tiles % ROW_CONFIGS[config][2]
    ):
        raise ValueError(f"row-group variant {variant} does not fit {packed.n}x{packed.k}")
    if x.data_ptr() % 16:  # cp.async copies 16-byte chunks of each row
        x = x.clone()
    counters = _counters(x.device)
    ws = y  # unused when K is not split
    if splits > 1:
        ws = torch.empty(splits, m, packed.n_tiles * 16, dtype=torch.float32, device=x.device)
    kernel(
        grid=(groups, splits, 1),
        block=(THREADS, 1, 1),
        args=[
            packed.values,
            packed.meta,
            x,
            y,
            ws,
            counters,
            m,
            packed.n,
            packed.k,
            packed.k_blocks,
            packed.n_tiles,
            splits,
        ],
    )
    return y


def _family(variant: int) -> int:
    """The compiled kernel a variant runs: NTB of the k-slice kernel, or 10·ROWS_KERNEL·C + ROWS_KERNEL·PF."""
    if variant < ROWS_KERNEL:
        return variant
    _, prefetch, config = rows_parts(variant)
    if prefetch not in ROWS_PREFETCH or config not in ROW_CONFIGS:
        raise ValueError(f"unknown mma.sp variant {variant}")
    return variant // ROWS_KERNEL * ROWS_KERNEL


@functools.cache
def _counters(device: torch.device) -> torch.Tensor:
    """Per-device completion counters of the row-group kernel: zero between launches (the last block of a
    group resets its own), so one zero-filled buffer serves every layer launched on a stream."""
    return torch.zeros(MAX_ROW_GROUPS, dtype=torch.int32, device=device)


def _arch(device: torch.device | None) -> str:
    major, minor = torch.cuda.get_device_capability(device)
    return f"{major}{minor}"


@functools.cache
def _compiled(bf16: bool, mt: int, family: int, arch: str):  # -> torch.cuda._utils._CudaKernel
    flag = "true" if bf16 else "false"
    if family >= ROWS_KERNEL:
        _, prefetch, config = rows_parts(family)
        rw, kw, ntw = ROW_CONFIGS[config]
        name = f"sp24_mma_rows<{flag}, {mt}, {prefetch}, {rw}, {kw}, {ntw}>"
    else:
        name = f"sp24_mma_gemm<{flag}, {mt}, {family}>"
    cubin, lowered = _nvrtc_compile(kernel_source(), name, arch)
    from torch.cuda._utils import _cuda_load_module

    return _cuda_load_module(cubin, [lowered])[lowered]


def _nvrtc_compile(source: str, name_expression: str, arch: str) -> tuple[bytes, str]:
    """Compile one template instance to a cubin for sm_<arch>; returns (cubin, lowered kernel name)."""
    try:
        from torch.cuda._utils import _get_gpu_rtc_library

        nvrtc = _get_gpu_rtc_library()
    except (ImportError, OSError) as exc:
        raise KernelUnavailable(f"NVRTC not found ({exc})") from exc

    def check(status: int, prog: ctypes.c_void_p | None = None) -> None:
        if status == 0:
            return
        log = ""
        if prog is not None:
            size = ctypes.c_size_t()
            nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            buf = ctypes.create_string_buffer(size.value)
            nvrtc.nvrtcGetProgramLog(prog, buf)
            log = buf.value.decode(errors="replace")
        raise KernelUnavailable(f"NVRTC failed for {name_expression} (status {status}): {log.strip()}")

    prog = ctypes.c_void_p()
    check(nvrtc.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"sp24_mma.cu", 0, None, None))
    try:
        check(nvrtc.nvrtcAddNameExpression(prog, name_expression.encode()))
        options = [f"--gpu-architecture=sm_{arch}".encode(), b"-std=c++17", b"-default-device"]
        opts = (ctypes.c_char_p * len(options))(*options)
        check(nvrtc.nvrtcCompileProgram(prog, len(options), opts), prog)
        size = ctypes.c_size_t()
        check(nvrtc.nvrtcGetCUBINSize(prog, ctypes.byref(size)))
        cubin = ctypes.create_string_buffer(size.value)
        check(nvrtc.nvrtcGetCUBIN(prog, cubin))
        lowered = ctypes.c_char_p()
        check(nvrtc.nvrtcGetLoweredName(prog, name_expression.encode(), ctypes.byref(lowered)))
        return cubin.raw, lowered.value.decode()
    finally:
        nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))
