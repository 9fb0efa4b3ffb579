"""Small real building blocks shared by the pruning tests (no mocks of the code under test)."""

from __future__ import annotations

import torch

from prune_jobs.quant_api import QuantParams


class RoundToNearest:
    """A minimal symmetric round-to-nearest ColumnQuantizer (the real schemes live in prune_jobs.quantize)."""

    def __init__(self, bits: int, group_size: int | None) -> None:
        self.qmax = 2 ** (bits - 1) - 1
        self.group_size = group_size
        self.scale: torch.Tensor | None = None
        self.groups_started = 0
        self._scales: list[torch.Tensor] = []

    def start_group(self, weight_group: torch.Tensor) -> None:
        self.scale = weight_group.abs().amax(dim=1).clamp_min(1e-8) / self.qmax  # [out]
        self._scales.append(self.scale)
        self.groups_started += 1

    def quantize(self, column: torch.Tensor) -> torch.Tensor:
        return torch.clamp(torch.round(column / self.scale), -self.qmax - 1, self.qmax) * self.scale

    def params(self) -> QuantParams:
        scales = torch.stack(self._scales, dim=1)  # [out, n_groups]
        return QuantParams(scales=scales, zero_points=None, group_size=self.group_size)


def correlated_inputs(tokens: int, features: int, seed: int = 0) -> torch.Tensor:
    """[tokens, features] activations like an LLM's: few latent directions (rank features/4) plus noise,
    features of very different scales."""
    g = torch.Generator().manual_seed(seed)
    rank = max(1, features // 4)
    mixing = torch.randn(rank, features, generator=g) / rank**0.5
    scales = torch.exp(torch.randn(features, generator=g))  # log-normal per-feature scale
    latent = torch.randn(tokens, rank, generator=g)
    return (latent @ mixing + 0.1 * torch.randn(tokens, features, generator=g)) * scales


def output_error(x: torch.Tensor, dense: torch.Tensor, pruned: torch.Tensor) -> float:
    """‖X W_p^T − X W^T‖ / ‖X W^T‖ computed directly on the activations."""
    return float(torch.linalg.norm(x @ (pruned - dense).T) / torch.linalg.norm(x @ dense.T))


WORDS = (
    "the model layer weight prune sparse dense token window river city music history science garden winter "
    "north ancient station bridge market theory language energy system music night summer road village "
    "light water stone paper field colour story people small large early later with from into over under"
).split()


def write_text(path, words: int = 6000, seed: int = 0):
    """A plain-English-looking text file (no external data needed)."""
    g = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, len(WORDS), (words,), generator=g).tolist()
    sentences, line = [], []
    for i, index in enumerate(picks):
        line.append(WORDS[index])
        if i % 12 == 11:
            sentences.append(" ".join(line).capitalize() + ".")
            line = []
    path.write_text("\n".join(sentences) + "\n")
    return path


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """Run `prune-jobs ARGS` in this process → (exit code, stdout, stderr)."""
    import contextlib
    import io

    from prune_jobs.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()
