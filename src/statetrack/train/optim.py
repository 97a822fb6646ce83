"""The optimiser of a run: AdamW with weight decay on matrices and embeddings only."""

from __future__ import annotations

import torch

from .config import TrainConfig


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices and embeddings; leave vectors (norm gains, biases, gate constants) alone."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, tc: TrainConfig, device: torch.device, graphed: bool):
    """AdamW over :func:`param_groups` with ``tc``'s lr, betas and weight decay; fused on CUDA.

    A graphed step reads the lr from a device tensor that the scheduler refills in place, and needs a
    capturable AdamW (its step count lives on the device)."""
    lr = torch.tensor(tc.lr, device=device) if graphed else tc.lr
    return torch.optim.AdamW(param_groups(model, tc.weight_decay), lr=lr, betas=(tc.beta1, tc.beta2),
                             fused=device.type == "cuda", capturable=graphed)  # fmt: skip
