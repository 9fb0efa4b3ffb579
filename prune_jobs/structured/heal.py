"""`--heal STEPS`: a short recovery of the pruned model by distillation from the dense one (the Minitron
recipe, scaled down): on the calibration windows, minimise KL(p_dense ‖ p_pruned) of the next-token
distributions at every position, with AdamW.

Only the decoder blocks (and the final norm) train: the embeddings and the tied lm_head hold ~21% of
SmolLM2's parameters but were not pruned, and freezing them saves their gradient and optimizer state.
The learning rate warms up linearly over the first 10% of the steps and decays along a cosine to 10%.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from prune_jobs.structured.spec import HealConfig

log = logging.getLogger(__name__)
PROBE_WINDOWS = 4  # windows on which the KL is measured before and after healing
GRAD_CLIP = 1.0


@dataclass(frozen=True)
class HealResult:
    losses: list[float]  # distillation KL (nats/token) of every step's batch
    kl_before: float  # on the first PROBE_WINDOWS calibration windows
    kl_after: float
    tokens: int  # training tokens seen
    seconds: float


def distillation_kl(student: nn.Module, teacher: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Mean over all positions of KL(teacher ‖ student) of the next-token distributions. ids: [b, seqlen]."""
    with torch.no_grad():
        teacher_logp = F.log_softmax(teacher(input_ids=ids, use_cache=False).logits.float(), dim=-1)
    student_logp = F.log_softmax(student(input_ids=ids, use_cache=False).logits.float(), dim=-1)
    vocab = student_logp.shape[-1]
    return F.kl_div(
        student_logp.reshape(-1, vocab),
        teacher_logp.reshape(-1, vocab),
        log_target=True,
        reduction="batchmean",
    )


def probe_kl(student: nn.Module, teacher: nn.Module, ids: torch.Tensor) -> float:
    with torch.no_grad():
        return float(sum(distillation_kl(student, teacher, w[None]) for w in ids) / len(ids))


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Everything except the embeddings and the output head (tied or not), which are frozen."""
    heads = (model.get_input_embeddings(), model.get_output_embeddings())
    frozen = {id(p) for m in heads if m is not None for p in m.parameters()}
    params = []
    for p in model.parameters():
        p.requires_grad_(id(p) not in frozen)
        if p.requires_grad:
            params.append(p)
    return params


def warmup_cosine(steps: int, floor: float = 0.1) -> callable:
    warmup = max(1, steps // 10)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def heal(
    student: nn.Module,
    teacher: nn.Module,
    windows: torch.Tensor,
    config: HealConfig,
    *,
    seed: int = 0,
    progress: bool = True,
) -> HealResult:
    """Distil `teacher` into `student` (in place) on `windows` [samples, seqlen], `config.steps` steps of
    `config.batch` windows drawn without replacement (reshuffled every epoch)."""
    from tqdm import tqdm

    start = time.perf_counter()
    teacher.eval()
    student.eval()
    probe = windows[:PROBE_WINDOWS]
    kl_before = probe_kl(student, teacher, probe)
    params = trainable_parameters(student)
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=(0.9, 0.95), weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(config.steps))
    batches = _batches(windows.shape[0], config.batch, seed)
    losses: list[float] = []
    student.train()
    bar = tqdm(range(config.steps), desc="heal", unit="step", disable=None if progress else True)
    for step in bar:
        loss = distillation_kl(student, teacher, windows[next(batches)])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        optimizer.step()
        schedule.step()
        losses.append(round(loss.item(), 6))
        bar.set_postfix(kl=f"{losses[-1]:.4f}")
        if bar.disable and progress and (step + 1) % max(1, config.steps // 10) == 0:
            elapsed = time.perf_counter() - start
            log.info("heal step %d/%d: KL %.4f (%.0f s)", step + 1, config.steps, losses[-1], elapsed)
    student.eval()
    for p in student.parameters():
        p.requires_grad_(True)
    kl_after = probe_kl(student, teacher, probe)
    return HealResult(
        losses=losses,
        kl_before=round(kl_before, 6),
        kl_after=round(kl_after, 6),
        tokens=config.steps * config.batch * windows.shape[1],
        seconds=round(time.perf_counter() - start, 3),
    )


def _batches(samples: int, batch: int, seed: int):  # noqa: ANN202 - an endless index generator
    generator = torch.Generator().manual_seed(seed)
    pending: list[int] = []
    while True:
        while len(pending) < batch:
            pending += torch.randperm(samples, generator=generator).tolist()
        yield torch.tensor(pending[:batch])
        pending = pending[batch:]


def plot_losses(losses: list[float], path: Path, title: str) -> Path:
    """PNG of the per-step distillation KL and its moving average."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = max(1, len(losses) // 20)
    smooth = [
        sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1])
        for i in range(len(losses))
    ]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = range(1, len(losses) + 1)
    ax.plot(steps, losses, color="#9ab", linewidth=0.8, label="per step")
    ax.plot(steps, smooth, color="#c33", linewidth=1.8, label=f"moving average ({window})")
    ax.set_xlabel("step")
    ax.set_ylabel("KL(dense ‖ pruned), nats/token")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
