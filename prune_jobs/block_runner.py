"""Push the calibration batches through one decoder block while its linear layers are pruned.

Two schedules, chosen by `--within-layer` (its `auto` default picks one per job: `PruneConfig.schedule`):

- `sequential`: each linear layer is pruned from inputs that already went through the pruned
  linear layers before it in the same block (q/k/v, then o, then gate/up, then down in a Llama block), and
  the block's outputs come out of that same pass: one forward per block. To get there without rewriting any
  architecture's forward, every batch runs in its own thread: at the first call of a linear layer each
  thread adds its input to the layer's statistics and waits; the last to arrive prunes the layer and wakes
  the others, which continue with the pruned weights. Memory: the activations every batch holds at that
  point (a few hidden-sized vectors per calibration token), not a full set of intermediates.
- `parallel` (the Wanda/SparseGPT reference codes): statistics of all linear layers come from one pass with
  the dense block, all are pruned, then a second pass computes the outputs.

Batches run in "lanes": as many threads compute at once as torch has intra-op threads (cores), each with one
intra-op thread. Batches are independent, so this uses the cores fully, also for the small element-wise and
attention kernels that scale poorly inside one op; pruning itself runs with all threads.

Linear layers that receive the very same input tensor (q/k/v; gate/up) share one set of statistics, which
saves the Hessian accumulation for all but the first of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from prune_jobs.block_inputs import BlockInputs
from prune_jobs.lanes import run_in_lanes, single_threaded_lanes
from prune_jobs.stats import LinearStats

PruneLinear = Callable[[str, nn.Linear, LinearStats], None]
NewStats = Callable[[int], LinearStats]


class BlockScheduleError(RuntimeError):
    """The batches called the block's linear layers in different orders (e.g. mixture-of-experts routing)."""


class _SharedInputs:
    """Per thread, the last linear input seen and its statistics: the next linear called with the very same
    tensor object (q → k → v) reuses those statistics instead of accumulating them again."""

    def __init__(self) -> None:
        self._local = threading.local()

    def shared_with(self, x: torch.Tensor) -> LinearStats | None:
        last = getattr(self._local, "last", None)
        return last[1] if last is not None and last[0] is x else None

    def remember(self, x: torch.Tensor, stats: LinearStats) -> None:
        self._local.last = (x, stats)

    def forget(self) -> None:
        self._local.last = None


class _Done(Exception):
    """Raised once the last linear layer's input is recorded: the rest of the block feeds no statistics."""


def run_block_parallel(
    block: nn.Module,
    inputs: BlockInputs,
    linears: dict[str, nn.Linear],
    new_stats: NewStats,
    prune: PruneLinear,
    *,
    need_outputs: bool = True,
) -> None:
    """Statistics from the dense block, prune every linear, then outputs: replaces `inputs.hidden` (left
    stale when `need_outputs` is False: the last block's outputs feed nothing)."""
    names = {id(m): n for n, m in linears.items()}
    stats: dict[str, LinearStats] = {}
    order: list[str] = []
    shared = _SharedInputs()
    learning = [True]  # the first batch alone learns the call order and which inputs are shared

    def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        name = names[id(module)]
        x = args[0]
        same = shared.shared_with(x)
        if learning[0] and name not in stats:
            order.append(name)
            stats[name] = same if same is not None else new_stats(module.in_features)
        if stats[name] is not same:
            stats[name].add(x)
        shared.remember(x, stats[name])
        if not learning[0] and name == order[-1]:
            raise _Done

    def stats_pass(index: int) -> None:
        shared.forget()
        try:
            inputs.call(block, index)
        except _Done:
            pass

    def output_pass(index: int) -> None:
        inputs.hidden[index] = inputs.call(block, index)

    handles = [m.register_forward_pre_hook(hook) for m in linears.values()]
    with single_threaded_lanes() as lanes:
        try:
            with torch.no_grad():
                stats_pass(0)
            learning[0] = False
            run_in_lanes(len(inputs) - 1, lanes, lambda i: stats_pass(i + 1))
        finally:
            for handle in handles:
                handle.remove()
        for name in order:
            prune(name, linears[name], stats[name])
        if need_outputs:
            run_in_lanes(len(inputs), lanes, output_pass)


class _SequentialRun:
    """State shared by the batch threads of one block (see the module docstring)."""

    def __init__(
        self,
        inputs: BlockInputs,
        linears: dict[str, nn.Linear],
        new_stats: NewStats,
        prune: PruneLinear,
        need_outputs: bool,
    ) -> None:
        self.inputs = inputs
        self.need_outputs = need_outputs
        self.linears = linears
        self.names = {id(m): n for n, m in linears.items()}
        self.new_stats = new_stats
        self.prune = prune
        self.state = threading.Condition()  # guards the bookkeeping below; held only briefly
        self.live = len(inputs)  # threads not finished
        self.arrived: dict[str, int] = {}
        self.stats: dict[str, LinearStats] = {}
        self.pruning: set[str] = set()
        self.pruned: set[str] = set()
        self.error: BaseException | None = None
        self.shared = _SharedInputs()
        self.lanes = threading.Semaphore(1)
        self.threads = 1

    def hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        name = self.names[id(module)]
        if name in self.pruned:
            return
        x = args[0]
        complete = self.shared.shared_with(x)
        if complete is not None:  # same input as a linear whose statistics are already complete
            with self.state:
                self.stats.setdefault(name, complete)
            self._prune_once(name, all_threads=False)
            self._stop_if_done()
            return
        with self.state:
            stats = self.stats.setdefault(name, self.new_stats(module.in_features))
        stats.add(x)  # in this lane, concurrently with the other lanes
        self.shared.remember(x, stats)
        with self.state:
            self.arrived[name] = self.arrived.get(name, 0) + 1
            last = self._ready_to_prune()
        if last is not None:  # every batch is waiting here: prune with all threads
            self._prune_once(last, all_threads=True)
        self.lanes.release()
        try:
            with self.state:
                self.state.wait_for(lambda: name in self.pruned or self.error is not None)
        finally:
            self.lanes.acquire()
        if self.error is not None:
            raise _Aborted
        self._stop_if_done()

    def _stop_if_done(self) -> None:
        """Without a use for the block's outputs, a batch stops once every linear layer is pruned."""
        if not self.need_outputs and len(self.pruned) == len(self.linears):
            raise _Aborted

    def _ready_to_prune(self) -> str | None:
        """(state held) A linear that every unfinished thread has reached and nobody prunes yet."""
        for name, count in self.arrived.items():
            if name not in self.pruned and name not in self.pruning and count >= self.live:
                return name
        waiting = sum(count for name, count in self.arrived.items() if name not in self.pruned)
        if self.live > 0 and waiting == self.live and not self.pruning:
            stuck = sorted(n for n in self.arrived if n not in self.pruned)
            raise BlockScheduleError(
                f"batches wait at different linear layers ({', '.join(stuck)}); "
                "use --within-layer parallel for this architecture"
            )
        return None

    def _prune_once(self, name: str, *, all_threads: bool) -> None:
        with self.state:
            if name in self.pruned:
                return
            if name in self.pruning:  # another lane is on it
                self.state.wait_for(lambda: name in self.pruned or self.error is not None)
                return
            self.pruning.add(name)
        if all_threads:
            torch.set_num_threads(self.threads)
        try:
            self.prune(name, self.linears[name], self.stats[name])
        except BaseException as exc:
            with self.state:  # before the waiting threads see the layer as done
                self.error = self.error or exc
            raise
        finally:
            if all_threads:
                torch.set_num_threads(1)
            with self.state:
                self.pruning.discard(name)
                self.pruned.add(name)
                self.state.notify_all()

    def work(self, index: int) -> None:
        torch.set_num_threads(1)
        self.lanes.acquire()
        try:
            if self.error is None:
                with torch.no_grad():
                    self.inputs.hidden[index] = self.inputs.call(self.block, index)
        except _Aborted:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises it
            with self.state:
                self.error = self.error or exc
                self.state.notify_all()
        finally:
            self.lanes.release()
            self.shared.forget()
            self._finish()

    def _finish(self) -> None:
        """A thread ended: linears the others are waiting at may now be complete (it never calls them)."""
        try:
            with self.state:
                self.live -= 1
                ready = self._ready_to_prune()
            if ready is not None:
                self._prune_once(ready, all_threads=False)
        except BaseException as exc:  # noqa: BLE001
            with self.state:
                self.error = self.error or exc
                self.state.notify_all()

    def run(self, block: nn.Module) -> None:
        self.block = block
        handles = [m.register_forward_pre_hook(self.hook) for m in self.linears.values()]
        threads = [
            threading.Thread(target=self.work, args=(i,), daemon=True) for i in range(len(self.inputs))
        ]
        try:
            with single_threaded_lanes() as lanes:
                self.threads = lanes
                self.lanes = threading.Semaphore(lanes)
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
        finally:
            for handle in handles:
                handle.remove()
        if self.error is not None:
            raise self.error


class _Aborted(Exception):
    """Another batch thread failed; this one stops where it is."""


def run_block_sequential(
    block: nn.Module,
    inputs: BlockInputs,
    linears: dict[str, nn.Linear],
    new_stats: NewStats,
    prune: PruneLinear,
    *,
    need_outputs: bool = True,
) -> None:
    """One pass: each linear pruned from the outputs of the already pruned ones; replaces `inputs.hidden`
    (left stale when `need_outputs` is False)."""
    _SequentialRun(inputs, linears, new_stats, prune, need_outputs).run(block)


RUNNERS = {"sequential": run_block_sequential, "parallel": run_block_parallel}
