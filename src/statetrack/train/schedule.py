"""Learning-rate schedule: linear warm-up from ~0 to lr, then cosine decay to min_lr at the last step."""

from __future__ import annotations

import math

import torch


def warmup_cosine(step: int, total: int, warmup: int, lr: float, min_lr: float) -> float:
    """The learning rate used for optimiser step ``step`` (0-based) of ``total``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    span = max(total - warmup - 1, 1)
    progress = min((step - warmup) / span, 1.0)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def make_scheduler(opt: torch.optim.Optimizer, total: int, warmup: int, lr: float, min_lr: float):
    """A LambdaLR whose factor times ``lr`` is :func:`warmup_cosine` (its state_dict holds the step)."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, total, warmup, lr, min_lr) / lr if lr > 0 else 0.0
    )
