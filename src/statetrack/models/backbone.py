"""The token-classification model: embedding, pre-norm blocks (RMSNorm, mixer, SwiGLU MLP), final norm, head.

Shapes: tokens [B, T] (long) -> logits [B, T, V]; the model state is a list with one layer state per block.
"""

from __future__ import annotations

import torch
from torch import nn

from statetrack.layers import RMSNorm, State, build_mixer
from statetrack.layers.varlen import mixer_forward
from statetrack.ops import swiglu

from .config import ModelConfig


class SwiGLU(nn.Module):
    """x [..., D] -> W_down (SiLU(W_gate x) * W_up x) [..., D]; ``backend``: :func:`statetrack.ops.swiglu`'s."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.gate_up = nn.Linear(d_model, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor, backend: str = "torch") -> torch.Tensor:
        return self.down(swiglu(self.gate_up(x), backend=backend))


def mlp_hidden_size(d_model: int, mlp_ratio: float) -> int:
    """SwiGLU hidden size for a ratio (LLaMA's 2/3 rule, a multiple of 8); 0 for no MLP."""
    return max(8, 8 * round(2 * mlp_ratio * d_model / 3 / 8)) if mlp_ratio > 0 else 0


def _autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The dtype autocast would cast x to in a matmul (None when autocast is off): the block's norms write their
    output in it, so that the projections reading one normed x share one copy of it (made by the norm kernel),
    where each would otherwise cast the fp32 x itself and keep its own copy for the backward."""
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) and x.dtype == torch.float32 else None


class Block(nn.Module):
    """x + mixer(norm(x)), then x + mlp(norm(x)) (no MLP when ``mlp_hidden`` = 0).

    ``forward(x, state, output_state, cu_seqlens)``: x [B, T, D] (or a packed [1, T, D] row with cu_seqlens).
    """

    #: backend of the two RMSNorms and the SwiGLU activation: "auto" (one fused kernel each on CUDA: the
    #: RMSNorm's Triton kernel, liger-kernel's SwiGLU; fewer launches for a graphed decoding step, no fp32 copies
    #: of the activations in training) or "torch"; ensembles set it to "torch" (as every module's ``fused_ops``)
    fused_ops = "auto"

    def __init__(self, d_model: int, mixer: nn.Module, mlp_hidden: int, norm_eps: float = 1e-6):
        super().__init__()
        self.mixer_norm = RMSNorm(d_model, norm_eps)
        self.mixer = mixer
        self.mlp = SwiGLU(d_model, mlp_hidden) if mlp_hidden > 0 else None
        self.mlp_norm = RMSNorm(d_model, norm_eps) if self.mlp is not None else None

    def _mlp(self, x):
        if self.mlp is None:
            return x
        return x + self.mlp(self.mlp_norm(x, backend=self.fused_ops, out_dtype=_autocast_dtype(x)), self.fused_ops)

    def forward(self, x, state: State | None = None, output_state: bool = False, cu_seqlens=None):
        h = self.mixer_norm(x, backend=self.fused_ops, out_dtype=_autocast_dtype(x))
        y, state = mixer_forward(self.mixer, h, state, output_state, cu_seqlens)
        return self._mlp(x + y), state

    def step(self, x, state: State | None = None):
        y, state = self.mixer.step(self.mixer_norm(x, backend=self.fused_ops), state)
        return self._mlp(x + y), state


class TokenClassifier(nn.Module):
    """tokens [B, T] -> logits [B, T, V]: one prediction per position (state-tracking tasks)."""

    fused_ops = Block.fused_ops  # the final norm's backend (as the blocks')

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg.validate()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        hidden, settings = mlp_hidden_size(cfg.d_model, cfg.mlp_ratio), cfg.mixer_settings
        self.blocks = nn.ModuleList(
            Block(cfg.d_model, build_mixer(cfg.mixer, cfg.d_model, settings), hidden, cfg.norm_eps)
            for _ in range(cfg.n_layers)
        )
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
        logits = self.head(self.norm(x, backend=self.fused_ops))
        return (logits, new) if output_state else logits

    def step(self, token: torch.Tensor, state: list[State] | None = None):
        """token [B] -> (logits [B, V], new state list)."""
        x = self.embed(token)
        new = []
        for i, block in enumerate(self.blocks):
            x, st = block.step(x, None if state is None else state[i])
            new.append(st)
        return self.head(self.norm(x, backend=self.fused_ops)), new

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
