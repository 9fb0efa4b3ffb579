"""Lanes: run independent pieces of work (calibration batches, evaluation windows) on as many threads as
torch has intra-op threads, each thread computing with one intra-op thread.

On a small CPU this beats one batch at a time with all threads: the element-wise, normalisation and
attention kernels scale poorly inside one op, and BLAS calls release the GIL, so the cores stay busy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from threadpoolctl import threadpool_limits


@contextmanager
def single_threaded_lanes() -> Iterator[int]:
    """Numpy's BLAS single-threaded for the duration (the lanes provide the parallelism); yields the number
    of lanes (torch's intra-op thread count) and restores torch's thread setting afterwards."""
    threads = torch.get_num_threads()
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield threads
    finally:
        torch.set_num_threads(threads)  # worker threads changed the default that new threads start with


def run_in_lanes(count: int, lanes: int, work: Callable[[int], None]) -> None:
    """work(0..count-1) on `lanes` threads, each computing with one intra-op thread; re-raises the first
    failure."""
    next_index = iter(range(count))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def lane() -> None:
        torch.set_num_threads(1)
        with torch.no_grad():
            while not errors:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                try:
                    work(index)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                    errors.append(exc)

    threads = [threading.Thread(target=lane, daemon=True) for _ in range(min(lanes, count))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
