"""Causal multi-head softmax attention with rotary positions (torch SDPA): the Transformer baseline.

Its "state" is the key/value cache: {"k": [B, H, L, K], "v": [B, H, L, K]} after L tokens; rotary positions
continue from L, so a forward over a continued sequence equals the forward over the whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import Mixer, MixerSettings, State
from .registry import register_mixer


def rotary(x: torch.Tensor, offset: int, base: float = 10000.0) -> torch.Tensor:
    """Rotate pairs (x_i, x_{i + K/2}) of x [B, H, T, K] by angle pos * base^(-2i/K), pos = offset + t."""
    K, T = x.shape[-1], x.shape[-2]
    half = K // 2
    inv = base ** (-torch.arange(half, device=x.device, dtype=torch.float32) * 2 / K)
    ang = (torch.arange(offset, offset + T, device=x.device, dtype=torch.float32)[:, None] * inv).to(x.dtype)
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x[..., :half], x[..., half : 2 * half]
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return torch.cat([out, x[..., 2 * half :]], dim=-1) if K % 2 else out


@dataclass
class AttentionSettings(MixerSettings):
    """n_heads: H (must divide d_model); rope_base: the rotary frequency base."""

    n_heads: int = 4
    rope_base: float = 10000.0


@register_mixer("transformer")
class Attention(Mixer):
    """x [B, T, D] -> y [B, T, D]; causal SDPA over H heads of size K = D / H, rotary positions."""

    Settings = AttentionSettings

    def __init__(self, d_model: int, settings: AttentionSettings | dict | None = None, **overrides):
        super().__init__(d_model, settings, **overrides)
        self.n_heads, self.rope_base = self.settings.n_heads, self.settings.rope_base
        self.head_dim = d_model // self.n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch_size: int, device=None, dtype: torch.dtype = torch.float32) -> State:
        z = torch.zeros(batch_size, self.n_heads, 0, self.head_dim, device=self._device(device), dtype=dtype)
        return {"k": z, "v": z.clone()}

    def forward(self, x: torch.Tensor, state: State | None = None, output_state: bool = False):
        """x [B, T, D] -> (y [B, T, D], cache or None)."""
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        L = 0 if state is None else state["k"].shape[2]
        q, k = rotary(q, L, self.rope_base), rotary(k, L, self.rope_base)
        if L:
            k = torch.cat([state["k"].to(k.dtype), k], dim=2)
            v = torch.cat([state["v"].to(v.dtype), v], dim=2)
            # query i (position L + i) sees keys 0 .. L + i
            mask = torch.ones(T, L + T, dtype=torch.bool, device=x.device).tril(diagonal=L)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = self.o_proj(o.transpose(1, 2).reshape(B, T, D))
        return y, ({"k": k, "v": v} if output_state else None)

    def step(self, x: torch.Tensor, state: State | None = None):
        """x [B, D] -> (y [B, D], cache one token longer)."""
        y, st = self.forward(x[:, None], state, output_state=True)
        return y[:, 0], st
