"""The token-classification model: embedding, pre-norm blocks (RMSNorm, mixer, SwiGLU MLP), final norm, head.

Shapes: tokens [B, T] (long) -> logits [B, T, V]; the model state is a list with one layer state per block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from statetrack.layers import RMSNorm, State, build_mixer

from .config import ModelConfig


class SwiGLU(nn.Module):
    """x [..., D] -> W_down (SiLU(W_gate x) * W_up x) [..., D]."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.gate_up = nn.Linear(d_model, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, u = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(g) * u)


class Block(nn.Module):
    """x + mixer(norm(x)), then x + mlp(norm(x)) (no MLP when mlp_ratio = 0)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.mixer_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mixer = build_mixer(cfg.mixer, cfg.d_model, cfg.mixer_settings)
        hidden = 8 * round(2 * cfg.mlp_ratio * cfg.d_model / 3 / 8)
        self.mlp = SwiGLU(cfg.d_model, max(hidden, 8)) if cfg.mlp_ratio > 0 else None
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps) if self.mlp is not None else None

    def forward(self, x, state: State | None = None, output_state: bool = False):
        y, state = self.mixer(self.mixer_norm(x), state, output_state)
        x = x + y
        if self.mlp is not None:
            x = x + self.mlp(self.mlp_norm(x))
        return x, state

    def step(self, x, state: State | None = None):
        y, state = self.mixer.step(self.mixer_norm(x), state)
        x = x + y
        if self.mlp is not None:
            x = x + self.mlp(self.mlp_norm(x))
        return x, state


class TokenClassifier(nn.Module):
    """tokens [B, T] -> logits [B, T, V]: one prediction per position (state-tracking tasks)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg.validate()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.head.weight, std=0.02)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight

    def init_state(self, batch_size: int, device=None) -> list[State]:
        return [b.mixer.init_state(batch_size, device) for b in self.blocks]

    def forward(self, tokens: torch.Tensor, state: list[State] | None = None, output_state: bool = False):
        """tokens [B, T] -> logits [B, T, V], or (logits, state list) when ``output_state``."""
        x = self.embed(tokens)
        new = []
        for i, block in enumerate(self.blocks):
            x, st = block(x, None if state is None else state[i], output_state)
            new.append(st)
        logits = self.head(self.norm(x))
        return (logits, new) if output_state else logits

    def step(self, token: torch.Tensor, state: list[State] | None = None):
        """token [B] -> (logits [B, V], new state list)."""
        x = self.embed(token)
        new = []
        for i, block in enumerate(self.blocks):
            x, st = block.step(x, None if state is None else state[i])
            new.append(st)
        return self.head(self.norm(x)), new

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
