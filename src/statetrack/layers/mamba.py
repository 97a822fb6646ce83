"""Mamba-1 block (Gu & Dao, 2023) with transition values a = min_eigenvalue + (1 - min_eigenvalue) exp(delta A).

x -> in_proj -> (u, z) [B, T, E] each (E = expand * D); u -> short causal conv + SiLU; (delta, B, C) from u:
delta = softplus(W_dt (W_x u) + b_dt) [B, T, E], B, C [B, T, N]; per channel e and state n:
    h_t[e, n] = a_t[e, n] h_{t-1}[e, n] + delta_t[e] B_t[n] u_t[e],   a = min_eig + (1 - min_eig) exp(delta A)
    y_t[e] = sum_n C_t[n] h_t[e, n] + D[e] u_t[e], gated by SiLU(z_t[e]); then out_proj.
Only A changes with min_eigenvalue; the input term delta B u does not (as in the paper).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from statetrack.ops import selective_scan, selective_scan_step, selective_transition

from .base import Mixer, MixerSettings, ShortConv, State
from .registry import register_mixer


@dataclass
class MambaSettings(MixerSettings):
    """Mamba's settings.

    Attributes:
        d_state: N, the state size per channel. min_eigenvalue: in [-1, 0]. expand: E = expand * d_model.
        dt_rank: rank of the step-size projection (None: ceil(d_model / 16)). conv_size: the short conv's kernel.
        dt_min, dt_max: the initial step sizes, log-uniform between them.
        backend, algorithm: passed to :func:`statetrack.ops.selective_scan` when set ("auto": the op's choice).
    """

    d_state: int = 16
    min_eigenvalue: float = -1.0
    expand: int = 2
    dt_rank: int | None = None
    conv_size: int = 4
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    backend: str = "auto"
    algorithm: str = "auto"


@register_mixer("mamba", MambaSettings)
class Mamba(Mixer):
    """x [B, T, D] -> y [B, T, D]; state {"h": [B, E, N] fp32, "conv": [B, E, W-1]}."""

    def build(self, d_model: int, s: MambaSettings) -> None:
        self.min_eigenvalue, d_state = s.min_eigenvalue, s.d_state
        E = s.expand * d_model
        self.d_inner, self.d_state = E, d_state
        self.op_options = {k: v for k, v in dict(backend=s.backend, algorithm=s.algorithm).items() if v != "auto"}
        self.dt_rank = s.dt_rank or math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * E, bias=False)
        self.conv = ShortConv(E, s.conv_size)
        self.x_proj = nn.Linear(E, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, E)
        self.dt_proj.keep_init = True  # its init sets the step sizes: a model-wide re-initialisation skips it
        with torch.no_grad():  # softplus(bias) log-uniform in [dt_min, dt_max], as in Mamba
            dt = torch.exp(torch.empty(E).uniform_(math.log(s.dt_min), math.log(s.dt_max)))
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
            nn.init.uniform_(self.dt_proj.weight, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(E, 1))
        self.D = nn.Parameter(torch.ones(E))
        self.out_proj = nn.Linear(E, d_model, bias=False)

    def init_state(self, batch_size: int, device=None, dtype: torch.dtype = torch.float32) -> State:
        dev = self._device(device)
        return {
            "h": torch.zeros(batch_size, self.d_inner, self.d_state, device=dev, dtype=dtype),
            "conv": self.conv.init_state(batch_size, dev, dtype),
        }

    def _params(self, u: torch.Tensor):
        """u [..., E] -> delta [..., E], B [..., N], C [..., N] (state dtype), A [E, N]."""
        sd = self.state_dtype(u)
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt).to(sd))
        return delta, B.to(sd), C.to(sd), -torch.exp(self.A_log.to(sd))

    def forward(self, x: torch.Tensor, state: State | None = None, output_state: bool = False):
        """x [B, T, D] -> (y [B, T, D], state or None)."""
        u, z = self.in_proj(x).chunk(2, dim=-1)
        u, conv_cache = self.conv(u, None if state is None else state["conv"])
        delta, Bm, Cm, A = self._params(u)
        sd = delta.dtype
        y, h = selective_scan(
            u.to(sd), delta, A, Bm, Cm, D=self.D.to(sd), z=z.to(sd), min_eigenvalue=self.min_eigenvalue,
            initial_state=None if state is None else state["h"], output_final_state=output_state,
            **self.op_options,
        )  # fmt: skip
        out = self.out_proj(y.to(x.dtype))
        return out, ({"h": h, "conv": conv_cache} if output_state else None)

    def step(self, x: torch.Tensor, state: State | None = None):
        """x [B, D] -> (y [B, D], new state)."""
        if state is None:
            state = self.init_state(x.shape[0], x.device, self.state_dtype(x))
        u, z = self.in_proj(x).chunk(2, dim=-1)
        u, conv_cache = self.conv.step(u, state["conv"])
        delta, Bm, Cm, A = self._params(u)
        sd = delta.dtype
        y, h = selective_scan_step(
            u.to(sd), delta, A, Bm, Cm, state["h"], D=self.D.to(sd), z=z.to(sd), min_eigenvalue=self.min_eigenvalue
        )
        return self.out_proj(y.to(x.dtype)), {"h": h, "conv": conv_cache}

    @torch.no_grad()
    def transitions(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, D] -> the diagonal transition values a [B, T, E, N]."""
        u, _ = self.in_proj(x).chunk(2, dim=-1)
        u, _ = self.conv(u)
        delta, _, _, A = self._params(u)
        return selective_transition(delta, A, self.min_eigenvalue)

    #: the transitions are diagonal, so their entries are the eigenvalues
    transition_eigenvalues = transitions
