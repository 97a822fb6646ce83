"""The training loss: cross-entropy over the labelled positions of a batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the positions where ``mask`` is True. logits [B, T, V]; target, mask [B, T].
    A masked mean rather than ``logits[mask]``: boolean indexing would sync with the GPU every step."""
    ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
    mf = mask.flatten().to(ce.dtype)
    return (ce * mf).sum() / mf.sum().clamp_min(1.0)
