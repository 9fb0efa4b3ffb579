"""Push the calibration batches through one decoder block while its linear layers are pruned.

Two schedules, chosen by `--within-layer`:

- `sequential` (default): each linear layer is pruned from inputs that already went through the pruned
  linear layers before it in the same block (q/k/v, then o, then gate/up, then down in a Llama block), and
  the block's outputs come out of that same pass: one forward per block. To get there without rewriting any
  architecture's forward, every batch runs in its own thread and the threads take turns (one runs at a time,
  so memory and CPU behave like a plain loop over batches): at the first call of a linear layer each thread
  adds its input to the layer's statistics and waits; the last to arrive prunes the layer and wakes the
  others, which continue with the pruned weights. Memory: the activations every batch holds at that point
  (about 2-4 hidden-sized vectors per calibration token), not a full set of intermediates.
- `parallel` (the Wanda/SparseGPT reference codes): statistics of all linear layers come from one pass with
  the dense block, all are pruned, then a second pass computes the outputs. One batch at a time in memory.

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


def run_block_parallel(
    block: nn.Module,
    inputs: BlockInputs,
    linears: dict[str, nn.Linear],
    new_stats: NewStats,
    prune: PruneLinear,
) -> None:
    """Statistics from the dense block, prune every linear, then outputs: replaces `inputs.hidden`."""
    names = {id(m): n for n, m in linears.items()}
    stats: dict[str, LinearStats] = {}
    order: list[str] = []
    shared = _SharedInputs()
    last_linear: list[str | None] = [None]

    class _Done(Exception):
        pass

    def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        name = names[id(module)]
        x = args[0]
        same = shared.shared_with(x)
        if name not in stats:
            order.append(name)
            stats[name] = same if same is not None else new_stats(module.in_features)
        if stats[name] is not same:
            stats[name].add(x)
        shared.remember(x, stats[name])
        if name == last_linear[0]:
            raise _Done  # the rest of the block feeds no statistics

    handles = [m.register_forward_pre_hook(hook) for m in linears.values()]
    try:
        with torch.no_grad():
            for index in range(len(inputs)):
                shared.forget()
                try:
                    inputs.call(block, index)
                except _Done:
                    pass
                last_linear[0] = order[-1] if order else None
    finally:
        for handle in handles:
            handle.remove()
    for name in order:
        prune(name, linears[name], stats[name])
    with torch.no_grad():
        for index in range(len(inputs)):
            inputs.hidden[index] = inputs.call(block, index)


class _SequentialRun:
    """State shared by the batch threads of one block (see the module docstring)."""

    def __init__(
        self, inputs: BlockInputs, linears: dict[str, nn.Linear], new_stats: NewStats, prune: PruneLinear
    ) -> None:
        self.inputs = inputs
        self.linears = linears
        self.names = {id(m): n for n, m in linears.items()}
        self.new_stats = new_stats
        self.prune = prune
        self.turn = threading.Condition()  # held by the one thread that runs
        self.live = len(inputs)  # threads not finished
        self.arrived: dict[str, int] = {}
        self.stats: dict[str, LinearStats] = {}
        self.pruned: set[str] = set()
        self.error: BaseException | None = None
        self.shared = _SharedInputs()

    def hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        name = self.names[id(module)]
        if name in self.pruned:
            return
        x = args[0]
        complete = self.shared.shared_with(x)
        if complete is not None:  # same input as a linear whose statistics are already complete
            self.stats[name] = complete
            self._prune(name)
            return
        stats = self.stats.setdefault(name, self.new_stats(module.in_features))
        stats.add(x)
        self.shared.remember(x, stats)
        self.arrived[name] = self.arrived.get(name, 0) + 1
        self._release_ready()
        self.turn.wait_for(lambda: name in self.pruned or self.error is not None)
        if self.error is not None:
            raise _Aborted

    def _prune(self, name: str) -> None:
        self.prune(name, self.linears[name], self.stats[name])
        self.pruned.add(name)

    def _release_ready(self) -> None:
        """Prune every linear that all unfinished threads have reached (called with `turn` held)."""
        released = False
        for name, count in self.arrived.items():
            if name not in self.pruned and count >= self.live:
                self._prune(name)
                released = True
        waiting = sum(count for name, count in self.arrived.items() if name not in self.pruned)
        if released:
            self.turn.notify_all()
        elif self.live > 0 and waiting == self.live:
            waiting_at = sorted(n for n in self.arrived if n not in self.pruned)
            raise BlockScheduleError(
                f"batches wait at different linear layers ({', '.join(waiting_at)}); "
                "use --within-layer parallel for this architecture"
            )

    def work(self, index: int) -> None:
        with self.turn:
            try:
                if self.error is None:
                    with torch.no_grad():
                        self.inputs.hidden[index] = self.inputs.call(self.block, index)
            except _Aborted:
                pass
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises it
                self.error = self.error or exc
            finally:
                self.shared.forget()
                self.live -= 1
                try:
                    self._release_ready()
                except BaseException as exc:  # noqa: BLE001
                    self.error = self.error or exc
                self.turn.notify_all()

    def run(self, block: nn.Module) -> None:
        self.block = block
        handles = [m.register_forward_pre_hook(self.hook) for m in self.linears.values()]
        threads = [
            threading.Thread(target=self.work, args=(i,), daemon=True) for i in range(len(self.inputs))
        ]
        try:
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
) -> None:
    """One pass: each linear pruned from the outputs of the already pruned ones; replaces `inputs.hidden`."""
    _SequentialRun(inputs, linears, new_stats, prune).run(block)


RUNNERS = {"sequential": run_block_sequential, "parallel": run_block_parallel}
