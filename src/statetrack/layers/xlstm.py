"""sLSTM and mLSTM (Beck et al., 2024), written here (no xlstm package: its fast paths are CUDA-only); the sLSTM
recurrence is ``ops.slstm_scan`` (one fused Triton launch each way on CUDA, the plain loop elsewhere). Both use
exponential input gates with the log-space stabiliser m of the xLSTM paper; neither has a ``min_eigenvalue`` (the
paper leaves them unmodified). The backbone supplies the blocks' MLP.

sLSTM, per head (recurrent weights R block-diagonal over heads), gates from W x_t + R h_{t-1} + b:
    m_t = max(log f_t + m_{t-1}, i~_t);  i' = exp(i~_t - m_t);  f' = exp(log f_t + m_{t-1} - m_t)
    c_t = f' c_{t-1} + i' tanh(z~_t);  n_t = f' n_{t-1} + i';  h_t = sigmoid(o~_t) * c_t / n_t
    with log f = logsigmoid(f~). Output: per-head norm of h, then a projection.
mLSTM, per head, matrix memory C [V, K] and normaliser n [K]; gates are scalars per head from x_t only:
    C_t = f' C_{t-1} + i' v_t k_t^T;  n_t = f' n_{t-1} + i' k_t;  h~_t = C_t q_t / max(|n_t . q_t|, exp(-m_t))
    y = o_t * norm(h~_t), with o_t = sigmoid(W_o x_t). forward uses the equivalent parallel (quadratic) form,
    step the recurrence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from statetrack.ops.prefix_sum import prefix_sum
from statetrack.ops.slstm import SLSTMState, slstm_cell, slstm_scan, zero_state

from .base import Mixer, MixerSettings, RMSNorm, ShortConv, State
from .registry import register_mixer


@dataclass
class SLSTMSettings(MixerSettings):
    """n_heads: H (must divide d_model; recurrent weights are block-diagonal over heads); norm_eps: the output
    norm's epsilon."""

    n_heads: int = 4
    norm_eps: float = 1e-6


@dataclass
class MLSTMSettings(SLSTMSettings):
    """sLSTM's settings, plus the short conv on q and k (use_short_conv, conv_size)."""

    use_short_conv: bool = True
    conv_size: int = 4


@register_mixer("slstm", SLSTMSettings)
class SLSTM(Mixer):
    """x [B, T, D] -> y [B, T, D]; state {"h", "c", "n", "m"}: [B, D] each (fp32)."""

    def build(self, d_model: int, s: SLSTMSettings) -> None:
        n_heads, norm_eps = s.n_heads, s.norm_eps
        self.head_dim, self.n_heads = d_model // n_heads, n_heads
        self.w = nn.Linear(d_model, 4 * d_model)  # gate pre-activations i, f, z, o from the input
        self.r = nn.Parameter(torch.randn(n_heads, self.head_dim, 4 * self.head_dim) / self.head_dim**0.5)
        with torch.no_grad():  # forget gates start open, spread over channels (xLSTM's choice)
            self.w.bias.zero_()
            self.w.bias[d_model : 2 * d_model] = torch.linspace(3.0, 6.0, d_model)
        self.norm = RMSNorm(self.head_dim, eps=norm_eps)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch_size: int, device=None, dtype: torch.dtype = torch.float32) -> State:
        z = torch.zeros(batch_size, self.d_model, device=self._device(device), dtype=dtype)
        return {"h": z, "c": z.clone(), "n": z.clone(), "m": z.clone()}

    def _wx(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., D] -> W x + b as [..., 4, H, K] in the state dtype (W x is laid out [gate, head, K])."""
        return self.w(x).to(self.state_dtype(x)).unflatten(-1, (4, self.n_heads, self.head_dim))

    def _r(self, dtype) -> torch.Tensor:
        """r [H, K, 4K] viewed as the op's [H, K, 4, K] (R h per head is laid out [gate, K])."""
        return self.r.to(dtype).unflatten(-1, (4, self.head_dim))

    def _heads(self, st: State | None, B: int, dtype) -> SLSTMState | None:
        """The layer's state {"h", "c", "n", "m"} ([B, D] each) as the op's (h, c, n, m), [B, H, K] each."""
        if st is None:
            return None
        return tuple(st[k].to(dtype).view(B, self.n_heads, self.head_dim) for k in "hcnm")

    def _flat(self, st: SLSTMState) -> State:
        return {k: v.reshape(v.shape[0], self.d_model) for k, v in zip("hcnm", st, strict=True)}

    def _out(self, h: torch.Tensor, dtype) -> torch.Tensor:
        """h [..., H, K] -> per-head norm, projection: [..., D]."""
        return self.o_proj(self.norm(h.to(dtype)).flatten(-2))

    def forward(self, x: torch.Tensor, state: State | None = None, output_state: bool = False):
        """x [B, T, D] -> (y [B, T, D], state or None). The recurrence is nonlinear: a loop over T, fused into one
        Triton launch each way on CUDA (ops.slstm_scan)."""
        wx = self._wx(x)
        h, st = slstm_scan(wx, self._r(wx.dtype), state=self._heads(state, x.shape[0], wx.dtype),
                           output_final_state=output_state)  # fmt: skip
        return self._out(h, x.dtype), (self._flat(st) if output_state else None)

    def step(self, x: torch.Tensor, state: State | None = None):
        """x [B, D] -> (y [B, D], new state)."""
        wx = self._wx(x)
        st = self._heads(state, x.shape[0], wx.dtype) or zero_state(x.shape[0], self.n_heads, self.head_dim,
                                                                     x.device, wx.dtype)  # fmt: skip
        st = slstm_cell(wx, self._r(wx.dtype), st)
        return self._out(st[0], x.dtype), self._flat(st)


@register_mixer("mlstm", MLSTMSettings)
class MLSTM(Mixer):
    """x [B, T, D] -> y [B, T, D]; state {"C": [B, H, V, K], "n": [B, H, K], "m": [B, H], conv caches}."""

    def build(self, d_model: int, s: MLSTMSettings) -> None:
        n_heads, norm_eps, use_short_conv, conv_size = s.n_heads, s.norm_eps, s.use_short_conv, s.conv_size
        self.head_dim, self.n_heads, self.use_short_conv = d_model // n_heads, n_heads, use_short_conv
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.gates = nn.Linear(d_model, 2 * n_heads)  # i~, f~ per head
        self.o_gate = nn.Linear(d_model, d_model, bias=False)
        with torch.no_grad():  # forget gates open and spread over heads (xLSTM's initialisation)
            self.gates.weight.normal_(0.0, 0.02)
            self.gates.bias[:n_heads] = 0.0
            self.gates.bias[n_heads:] = torch.linspace(3.0, 6.0, n_heads)
        if use_short_conv:  # on q and k, as in the xLSTM mLSTM block
            self.conv = ShortConv(2 * d_model, conv_size)
        self.norm = RMSNorm(self.head_dim, eps=norm_eps)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch_size: int, device=None, dtype: torch.dtype = torch.float32) -> State:
        dev, H, K = self._device(device), self.n_heads, self.head_dim
        st = {
            "C": torch.zeros(batch_size, H, K, K, device=dev, dtype=dtype),
            "n": torch.zeros(batch_size, H, K, device=dev, dtype=dtype),
            "m": torch.zeros(batch_size, H, device=dev, dtype=dtype),
        }
        if self.use_short_conv:
            st["conv"] = self.conv.init_state(batch_size, dev, dtype)
        return st

    def _inputs(self, x, st, new, step: bool):
        """[..., D] -> q, k, v [..., H, K] (state dtype), i~, log f [..., H]."""
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        if self.use_short_conv:
            qk = torch.cat([q, k], -1)
            cache = None if st is None else st.get("conv")
            if step:
                qk, new["conv"] = self.conv.step(qk, cache if cache is not None else self.conv.init_state(
                    x.shape[0], x.device, x.dtype))  # fmt: skip
            else:
                qk, new["conv"] = self.conv(qk, cache)
            q, k = qk.chunk(2, dim=-1)
        sd = self.state_dtype(x)
        shp = (*x.shape[:-1], self.n_heads, self.head_dim)
        q, k, v = q.reshape(shp).to(sd), k.reshape(shp).to(sd) * self.head_dim**-0.5, v.reshape(shp).to(sd)
        i_, f_ = self.gates(x).to(sd).chunk(2, dim=-1)
        return q, k, v, i_, F.logsigmoid(f_)

    def _out(self, x, h):
        """h [..., H, K] -> [..., D]."""
        h = self.norm(h.to(x.dtype)).flatten(-2)
        return self.o_proj(torch.sigmoid(self.o_gate(x)) * h)

    def forward(self, x: torch.Tensor, state: State | None = None, output_state: bool = False):
        """x [B, T, D] -> (y [B, T, D], state or None), by the parallel form with the same stabiliser m."""
        new: State = {}
        q, k, v, i_, log_f = self._inputs(x, state, new, step=False)
        B, T, H, K = q.shape
        st = self.init_state(B, x.device, q.dtype) if state is None else state
        Fc = prefix_sum(log_f, 1).transpose(1, 2)  # [B, H, T]: sum_{r <= t} log f_r (cumsum, deterministic)
        it = i_.transpose(1, 2)
        logD = Fc[..., :, None] - Fc[..., None, :] + it[..., None, :]  # [B, H, t, s]
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        logD = logD.masked_fill(~causal, float("-inf"))
        log0 = Fc + st["m"][..., None]  # weight of the initial state, [B, H, T]
        m = torch.maximum(logD.amax(-1), log0)
        W = torch.exp(logD - m[..., None])
        w0 = torch.exp(log0 - m)
        qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, T, K]
        qk = W * (qh @ kh.transpose(-1, -2))
        num = qk @ vh + w0[..., None] * torch.einsum("bhvk,bhtk->bhtv", st["C"], qh)
        nq = qk.sum(-1) + w0 * torch.einsum("bhk,bhtk->bht", st["n"], qh)
        h = num / torch.maximum(nq.abs(), torch.exp(-m))[..., None]
        y = self._out(x, h.transpose(1, 2))
        if not output_state:
            return y, None
        wl, w0l = W[:, :, -1], w0[:, :, -1]  # weights at the last token: [B, H, T], [B, H]
        new["C"] = w0l[..., None, None] * st["C"] + torch.einsum("bhs,bhsv,bhsk->bhvk", wl, vh, kh)
        new["n"] = w0l[..., None] * st["n"] + torch.einsum("bhs,bhsk->bhk", wl, kh)
        new["m"] = m[:, :, -1]
        return y, new

    def step(self, x: torch.Tensor, state: State | None = None):
        """x [B, D] -> (y [B, D], new state), by the recurrence."""
        if state is None:
            state = self.init_state(x.shape[0], x.device, self.state_dtype(x))
        new: State = {}
        q, k, v, i_, log_f = self._inputs(x, state, new, step=True)
        m = torch.maximum(log_f + state["m"], i_)
        i, f = torch.exp(i_ - m), torch.exp(log_f + state["m"] - m)
        C = f[..., None, None] * state["C"] + i[..., None, None] * v[..., :, None] * k[..., None, :]
        n = f[..., None] * state["n"] + i[..., None] * k
        nq = (n * q).sum(-1)
        h = (C @ q[..., None])[..., 0] / torch.maximum(nq.abs(), torch.exp(-m))[..., None]
        new.update(C=C, n=n, m=m)
        return self._out(x, h), new
