"""The paper's S5 baseline ("full matrix simple"): a free n x n transition matrix per token, H_0 = I.

H_t = A(x_t) H_{t-1}, A(x) = reshape(W_A x + c_A) to [n, n] (a learned matrix per token when x is an embedding);
y_t = W_o P(vec H_t), where P projects onto the unit ball (v / max(1, |v|)). The norm of A is not controlled,
as in the paper, so there is no ``min_eigenvalue`` here. A starts near the identity so that products neither
vanish nor explode at initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import Mixer, MixerSettings, State
from .registry import register_mixer


def prefix_products(A: torch.Tensor) -> torch.Tensor:
    """A [..., T, n, n] -> P [..., T, n, n] with P_t = A_t A_{t-1} ... A_1: log2(T) batched matmuls (Hillis-Steele)
    instead of T dependent ones; after the level with stride d, P_t holds the product of the 2d matrices ending
    at t (fewer at the start)."""
    T, d, P = A.shape[-3], 1, A
    while d < T:
        P = torch.cat([P[..., :d, :, :], P[..., d:, :, :] @ P[..., :-d, :, :]], dim=-3)
        d *= 2
    return P


@dataclass
class FullMatrixRNNSettings(MixerSettings):
    """n: the state is n x n; init_std: the spread of the transition projection around the identity."""

    n: int = 32
    init_std: float = 0.02


@register_mixer("full_matrix_rnn", FullMatrixRNNSettings)
class FullMatrixRNN(Mixer):
    """x [B, T, D] -> y [B, T, D]; state {"H": [B, n, n]} (the identity before the first token)."""

    def build(self, d_model: int, s: FullMatrixRNNSettings) -> None:
        n = self.n = s.n
        self.a_proj = nn.Linear(d_model, n * n)
        self.a_proj.keep_init = True  # near the identity by design: a model-wide re-initialisation skips it
        with torch.no_grad():
            self.a_proj.weight.normal_(0.0, s.init_std)
            self.a_proj.bias.copy_(torch.eye(n).flatten())
        self.o_proj = nn.Linear(n * n, d_model)

    def init_state(self, batch_size: int, device=None, dtype: torch.dtype = torch.float32) -> State:
        eye = torch.eye(self.n, device=self._device(device), dtype=dtype)
        return {"H": eye.expand(batch_size, self.n, self.n).clone()}

    def _out(self, H: torch.Tensor, dtype) -> torch.Tensor:
        v = H.flatten(-2)
        v = v / v.norm(dim=-1, keepdim=True).clamp_min(1.0)
        return self.o_proj(v.to(dtype))

    def forward(self, x: torch.Tensor, state: State | None = None, output_state: bool = False):
        """x [B, T, D] -> (y [B, T, D], state or None). H_t = (A_t ... A_1) H_0: prefix products in log2(T)
        batched matmuls (the recurrence is linear in H, so the order of the products is free)."""
        sd = self.state_dtype(x)
        A = self.a_proj(x).to(sd).view(*x.shape[:2], self.n, self.n)
        Hs = prefix_products(A)
        if state is not None:
            Hs = Hs @ state["H"].unsqueeze(1)
        if not output_state:
            return self._out(Hs, x.dtype), None
        last = Hs[:, -1] if x.shape[1] else (state or self.init_state(x.shape[0], x.device, sd))["H"]
        return self._out(Hs, x.dtype), {"H": last}

    def step(self, x: torch.Tensor, state: State | None = None):
        """x [B, D] -> (y [B, D], new state)."""
        sd = self.state_dtype(x)
        H = self.init_state(x.shape[0], x.device, sd)["H"] if state is None else state["H"]
        H = self.a_proj(x).to(sd).view(-1, self.n, self.n) @ H
        return self._out(H, x.dtype), {"H": H}
