import ctypes
import platform

import pytest

from prune_jobs.allocator import OPT_OUT_ENV, tune_glibc_malloc


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_accepts_the_settings(monkeypatch):
    monkeypatch.delenv(OPT_OUT_ENV, raising=False)
    assert tune_glibc_malloc() is True
    # Still a working allocator afterwards: a block above and one below the mmap threshold.
    for size in (40 << 20, 25 << 20):
        buffer = ctypes.create_string_buffer(size)
        buffer[size - 1] = b"x"
        assert buffer[size - 1] == b"x"


@pytest.mark.parametrize("value", ["0", "off", "false"])
def test_opt_out(monkeypatch, value):
    monkeypatch.setenv(OPT_OUT_ENV, value)
    assert tune_glibc_malloc() is False
