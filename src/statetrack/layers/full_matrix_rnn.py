"""The paper's S5 baseline ("full matrix simple"): a free n x n transition matrix per token, H_0 = I.

H_t = A(x_t) H_{t-1}, A(x) = reshape(W_A x + c_A) to [n, n] (a learned matrix per token when x is an embedding);
y_t = W_o P(vec H_t), where P projects onto the unit ball (v / max(1, |v|)). The norm of A is not controlled,
as in the paper, so there is no ``min_eigenvalue`` here. A starts near the identity so that products neither
vanish nor explode at initialisation.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Mixer, State


class FullMatrixRNN(Mixer):
    """x [B, T, D] -> y [B, T, D]; state {"H": [B, n, n]} (the identity before the first token)."""

    def __init__(self, d_model: int, n: int = 32, init_std: float = 0.02):
        super().__init__()
        self.n = n
        self.a_proj = nn.Linear(d_model, n * n)
        with torch.no_grad():
            self.a_proj.weight.normal_(0.0, init_std)
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
        """x [B, T, D] -> (y [B, T, D], state or None); a loop of T matrix products."""
        sd = self.state_dtype(x)
        H = self.init_state(x.shape[0], x.device, sd)["H"] if state is None else state["H"]
        A = self.a_proj(x).to(sd).view(*x.shape[:2], self.n, self.n)
        hs = []
        for t in range(x.shape[1]):
            H = A[:, t] @ H
            hs.append(H)
        y = self._out(torch.stack(hs, 1), x.dtype)
        return y, ({"H": H} if output_state else None)

    def step(self, x: torch.Tensor, state: State | None = None):
        """x [B, D] -> (y [B, D], new state)."""
        sd = self.state_dtype(x)
        H = self.init_state(x.shape[0], x.device, sd)["H"] if state is None else state["H"]
        H = self.a_proj(x).to(sd).view(-1, self.n, self.n) @ H
        return self._out(H, x.dtype), {"H": H}
