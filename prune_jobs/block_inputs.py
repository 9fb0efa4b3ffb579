"""The calibration activations entering one decoder block, kept batch by batch.

Only the inputs of the block being pruned live in memory: the runner replaces every batch's hidden states by
the block's outputs, which are the next block's inputs. The other arguments a block receives (rotary
position embeddings, attention mask, ...) are captured once from the model's own forward, so no
architecture's signature is hard-coded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


class _StopForward(Exception):
    """Raised by the capture hook: nothing after block 0 is needed."""


@dataclass
class BlockInputs:
    hidden: list[torch.Tensor]  # per batch: [batch, seqlen, hidden_size]
    extra_args: list[tuple[Any, ...]] = field(default_factory=list)  # per batch: positional args after hidden
    kwargs: list[dict[str, Any]] = field(default_factory=list)  # per batch: keyword arguments

    def __len__(self) -> int:
        return len(self.hidden)

    @property
    def tokens(self) -> int:
        return sum(h.shape[0] * h.shape[1] for h in self.hidden)

    def call(self, block: nn.Module, index: int) -> torch.Tensor:
        """Run `block` on batch `index` → its output hidden states [batch, seqlen, hidden_size]."""
        out = block(self.hidden[index], *self.extra_args[index], **self.kwargs[index])
        return out[0] if isinstance(out, tuple | list) else out

    def clone(self) -> BlockInputs:
        return BlockInputs([h.clone() for h in self.hidden], list(self.extra_args), list(self.kwargs))


def capture_block_inputs(
    model: nn.Module, first_block: nn.Module, input_ids: torch.Tensor, batch_size: int
) -> BlockInputs:
    """Run the model on `input_ids` [samples, seqlen] in batches, stopping at the first decoder block."""
    captured = BlockInputs(hidden=[])

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        kwargs = dict(kwargs)
        hidden = args[0] if args else kwargs.pop("hidden_states")
        captured.hidden.append(hidden.detach())
        captured.extra_args.append(tuple(args[1:]))
        captured.kwargs.append(kwargs)
        raise _StopForward

    handle = first_block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            for batch in input_ids.split(batch_size):
                try:
                    model(input_ids=batch, use_cache=False)
                except _StopForward:
                    pass
    finally:
        handle.remove()
    return captured
