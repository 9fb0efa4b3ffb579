"""Perplexity, by the shared protocol (/work/shared/PROTOCOL.md, docs/pruning.md):

the text is tokenized as one string; non-overlapping windows of `seqlen` tokens from the start, the first
`windows` of them; loss = mean next-token NLL over every predicted position (seqlen − 1 per window);
perplexity = exp(loss). Windows run in lanes (one per core), and logits are produced a chunk of positions at
a time, so that memory stays bounded (a full [1024, 49152] float logits tensor is 200 MB).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from prune_jobs.calibration import tokenize_as_one_string
from prune_jobs.errors import PruneJobError
from prune_jobs.lanes import run_in_lanes, single_threaded_lanes

LOGIT_CHUNK = 1024  # positions whose logits exist at once
# Config fields that make a model's logits differ from lm_head(final hidden state); such models go through
# their own forward, one window at a time.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


@dataclass(frozen=True)
class Perplexity:
    perplexity: float
    nll: float  # mean negative log-likelihood (nats per token)
    predicted_tokens: int
    windows: int
    seqlen: int
    text: str

    def as_dict(self) -> dict[str, object]:
        return {
            "perplexity": round(self.perplexity, 4),
            "nll": round(self.nll, 6),
            "predicted_tokens": self.predicted_tokens,
            "windows": self.windows,
            "seqlen": self.seqlen,
            "text": self.text,
        }


def perplexity(
    model: nn.Module,
    tokenizer: object,
    text_path: Path,
    *,
    seqlen: int = 1024,
    windows: int = 40,
    progress: bool = True,
) -> Perplexity:
    tokens = tokenize_as_one_string(tokenizer, text_path.read_text(encoding="utf-8"))
    available = tokens.numel() // seqlen
    if available == 0:
        raise PruneJobError(f"{text_path}: {tokens.numel()} tokens, fewer than one window of {seqlen}")
    count = min(windows, available)
    ids = tokens[: count * seqlen].reshape(count, seqlen)  # [windows, seqlen]
    total_nll = window_nll(model, ids, progress=progress)
    predicted = count * (seqlen - 1)
    mean = total_nll / predicted
    return Perplexity(math.exp(mean), mean, predicted, count, seqlen, text_path.name)


def window_nll(model: nn.Module, ids: torch.Tensor, *, progress: bool) -> float:
    """Sum of next-token NLL over all windows. ids: [windows, seqlen]. Windows go through in lanes (one
    window per thread at a time, see lanes.py); the sum is taken in window order, so it is deterministic."""
    from tqdm import tqdm

    config = model.config
    plain_head = not any(getattr(config, name, None) for name in _LOGIT_TRANSFORMS)
    totals = [0.0] * ids.shape[0]
    with (
        single_threaded_lanes() as lanes,
        tqdm(total=ids.shape[0], desc="perplexity", unit="window", disable=None if progress else True) as bar,
    ):

        def one_window(index: int) -> None:
            window = ids[index : index + 1]
            totals[index] = _chunk_nll(model, window) if plain_head else _forward_nll(model, window)
            bar.update(1)

        run_in_lanes(ids.shape[0], lanes, one_window)
    return sum(totals)


def _chunk_nll(model: nn.Module, ids: torch.Tensor) -> float:
    """ids [b, seqlen]: hidden states from the decoder, then logits LOGIT_CHUNK positions at a time."""
    hidden = model.get_decoder()(input_ids=ids, use_cache=False).last_hidden_state  # [b, seqlen, d]
    head = model.get_output_embeddings()
    inputs = hidden[:, :-1].reshape(-1, hidden.shape[-1])  # [b * (seqlen-1), d] positions that predict
    labels = ids[:, 1:].reshape(-1)  # [b * (seqlen-1)]
    total = 0.0
    for start in range(0, labels.numel(), LOGIT_CHUNK):
        logits = head(inputs[start : start + LOGIT_CHUNK]).float()  # [chunk, vocab]
        total += float(F.cross_entropy(logits, labels[start : start + LOGIT_CHUNK], reduction="sum"))
    return total


def _forward_nll(model: nn.Module, ids: torch.Tensor) -> float:
    logits = model(input_ids=ids, use_cache=False).logits.float()  # [b, seqlen, vocab]
    return float(
        F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum")
    )
