"""The paper's Figure 1 model: a diagonal linear RNN whose transition values reach ``min_eigenvalue``.

h_t = a_t * h_{t-1} + b_t,  a_t = min_eigenvalue + (1 - min_eigenvalue) * sigmoid(gate_scale * (W_a x_t + c_a)),
b_t = W_b x_t + c_b,  y_t = W_o LayerNorm(h_t).
With min_eigenvalue = 0 this is the [0, 1] model (sigmoid gate); with -1 it is 2 sigmoid(.) - 1 = tanh(.) in
[-1, 1]. The authors' code uses sigmoid(10 z) and tanh(10 z), i.e. a temperature of 10 for [0, 1] and 20 for
[-1, 1]; here one ``gate_scale`` (default 10) serves both, so the two runs differ only in min_eigenvalue.
The block's pre-norm and this post-LayerNorm are the model's "pre- and post-LayerNorm".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from statetrack.ops import diag_scan, diag_scan_step

from .base import Mixer, MixerSettings, State
from .registry import register_mixer


@dataclass
class DiagonalRNNSettings(MixerSettings):
    """d_state: N (None: d_model); min_eigenvalue in [-1, 0]; gate_scale: the gate's temperature."""

    d_state: int | None = None
    min_eigenvalue: float = -1.0
    gate_scale: float = 10.0


@register_mixer("diagonal_rnn", DiagonalRNNSettings)
class DiagonalRNN(Mixer):
    """x [B, T, D] -> y [B, T, D] through a real diagonal recurrence of size N; state {"h": [B, N]}."""

    def build(self, d_model: int, s: DiagonalRNNSettings) -> None:
        self.min_eigenvalue, self.gate_scale = s.min_eigenvalue, float(s.gate_scale)
        self.d_state = s.d_state or d_model
        self.a_proj = nn.Linear(d_model, self.d_state)
        self.b_proj = nn.Linear(d_model, self.d_state)
        self.norm = nn.LayerNorm(self.d_state)
        self.o_proj = nn.Linear(self.d_state, d_model)

    def _ab(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[..., D] -> a, b [..., N] in fp32 (fp64 for fp64 inputs)."""
        ft = self.state_dtype(x)
        s = torch.sigmoid(self.gate_scale * self.a_proj(x).to(ft))
        return self.min_eigenvalue + (1.0 - self.min_eigenvalue) * s, self.b_proj(x).to(ft)

    def init_state(self, batch_size: int, device=None, dtype: torch.dtype = torch.float32) -> State:
        return {"h": torch.zeros(batch_size, self.d_state, device=self._device(device), dtype=dtype)}

    def forward(self, x: torch.Tensor, state: State | None = None, output_state: bool = False):
        """x [B, T, D] -> (y [B, T, D], {"h": [B, N]} or None)."""
        a, b = self._ab(x)
        h, last = diag_scan(a, b, initial_state=None if state is None else state["h"], output_final_state=True)
        y = self.o_proj(self.norm(h.to(x.dtype)))
        return y, ({"h": last} if output_state else None)

    def step(self, x: torch.Tensor, state: State | None = None):
        """x [B, D] -> (y [B, D], new state)."""
        a, b = self._ab(x)
        h, _ = diag_scan_step(a, b, None if state is None else state["h"])
        return self.o_proj(self.norm(h.to(x.dtype))), {"h": h}

    @torch.no_grad()
    def transitions(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, D] -> the diagonal of each transition, a [B, T, N] (its eigenvalues)."""
        return self._ab(x)[0]

    #: the transitions are diagonal, so their entries are the eigenvalues
    transition_eigenvalues = transitions
