"""Causal multi-head softmax attention with rotary positions (torch SDPA): the Transformer baseline, and the
attention layers of hybrids (optionally sliding-window, as in the Gated DeltaNet paper's H2 models).

Its "state" is the key/value cache: {"k": [B, H, L, K], "v": [B, H, L, K], "kpos": [B, L], "pos": [B]}: row b has
read ``pos[b]`` tokens and keeps the keys of positions ``kpos[b]`` (all, or the last ``window``), right-aligned:
a row with fewer keys than L has empty slots (kpos -1) on the left, as a padded batch's rows do. Rotary positions
continue from ``pos``, so a forward over a continued sequence equals the forward over the whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import Mixer, MixerSettings, State
from .registry import register_mixer


def rotary(x: torch.Tensor, positions: torch.Tensor | int, base: float = 10000.0) -> torch.Tensor:
    """Rotate pairs (x_i, x_{i + K/2}) of x [B, H, T, K] by angle pos * base^(-2i/K). ``positions``: [B, T] (each
    row's own), [T], or an int offset (pos = offset + t)."""
    K, T = x.shape[-1], x.shape[-2]
    half = K // 2
    if isinstance(positions, int):
        positions = torch.arange(positions, positions + T, device=x.device)
    inv = base ** (-torch.arange(half, device=x.device, dtype=torch.float32) * 2 / K)
    ang = (positions.to(torch.float32)[..., None] * inv).to(x.dtype)
    if ang.dim() == 3:  # [B, T, half] -> [B, 1, T, half]: one angle per row and token, shared by the heads
        ang = ang[:, None]
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x[..., :half], x[..., half : 2 * half]
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return torch.cat([out, x[..., 2 * half :]], dim=-1) if K % 2 else out


@dataclass
class AttentionSettings(MixerSettings):
    """n_heads: H (must divide d_model); rope_base: the rotary frequency base; window: each token sees itself and
    the window - 1 tokens before it (None: all before it), and the cache keeps that many; max_length: the most
    positions a sequence may have (None: no limit; beyond it forward and step raise)."""

    n_heads: int = 4
    rope_base: float = 10000.0
    window: int | None = None
    max_length: int | None = None

    def check(self, d_model: int | None = None) -> None:
        super().check(d_model)
        for name in ("window", "max_length"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be an int >= 1 or None, got {v!r}")


@register_mixer("transformer", AttentionSettings)
class Attention(Mixer):
    """x [B, T, D] -> y [B, T, D]; causal SDPA over H heads of size K = D / H, rotary positions."""

    def build(self, d_model: int, s: AttentionSettings) -> None:
        self.n_heads, self.rope_base = s.n_heads, s.rope_base
        self.window, self.max_length = s.window, s.max_length
        self.head_dim = d_model // self.n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch_size: int, device=None, dtype: torch.dtype = torch.float32) -> State:
        dev = self._device(device)
        z = torch.zeros(batch_size, self.n_heads, 0, self.head_dim, device=dev, dtype=dtype)
        none = torch.zeros(batch_size, 0, dtype=torch.long, device=dev)
        return {"k": z, "v": z.clone(), "kpos": none, "pos": torch.zeros(batch_size, dtype=torch.long, device=dev)}

    def forward(self, x: torch.Tensor, state: State | None = None, output_state: bool = False):
        """x [B, T, D] -> (y [B, T, D], cache or None)."""
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        pos = torch.zeros(B, dtype=torch.long, device=x.device) if state is None else state["pos"].to(x.device)
        if self.max_length is not None:  # (reading pos on the host syncs a GPU: only when there is a limit)
            reach = (int(pos.max()) if B else 0) + T
            if reach > self.max_length:
                raise ValueError(f"attention max_length = {self.max_length}: this sequence reaches {reach} positions")
        q_pos = pos[:, None] + torch.arange(T, device=x.device)  # [B, T]
        q, k = rotary(q, q_pos, self.rope_base), rotary(k, q_pos, self.rope_base)
        k_pos = q_pos
        if state is not None and state["k"].shape[2]:
            k = torch.cat([state["k"].to(k.dtype), k], dim=2)
            v = torch.cat([state["v"].to(v.dtype), v], dim=2)
            k_pos = torch.cat([state["kpos"].to(x.device), q_pos], dim=1)
        if k_pos.shape[1] > T or self.window is not None:
            kp, qp = k_pos[:, None, :], q_pos[:, :, None]  # [B, 1, L] against [B, T, 1]
            mask = (kp >= 0) & (kp <= qp)
            if self.window is not None:
                mask &= kp > qp - self.window
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None])
        else:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = self.o_proj(o.transpose(1, 2).reshape(B, T, D))
        if not output_state:
            return y, None
        if self.window is not None:
            k, v, k_pos = k[:, :, -self.window :], v[:, :, -self.window :], k_pos[:, -self.window :]
        return y, {"k": k, "v": v, "kpos": k_pos, "pos": pos + T}

    def step(self, x: torch.Tensor, state: State | None = None):
        """x [B, D] -> (y [B, D], cache one token longer)."""
        y, st = self.forward(x[:, None], state, output_state=True)
        return y[:, 0], st

    @staticmethod
    def stack_states(states: list[State]) -> State:
        """One cache per document (batch 1 each) -> the batch's, right-aligned to the longest (empty slots on the
        left, kpos -1): what a padded batch's prompts leave for decoding."""
        L = max(s["k"].shape[2] for s in states)

        def left_pad(t: torch.Tensor, dim: int, value) -> torch.Tensor:
            shape = list(t.shape)
            shape[dim] = L - t.shape[dim]
            return torch.cat([t.new_full(shape, value), t], dim=dim)

        return {"k": torch.cat([left_pad(s["k"], 2, 0) for s in states]),
                "v": torch.cat([left_pad(s["v"], 2, 0) for s in states]),
                "kpos": torch.cat([left_pad(s["kpos"], 1, -1) for s in states]),
                "pos": torch.cat([s["pos"] for s in states])}  # fmt: skip
