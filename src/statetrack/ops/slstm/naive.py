"""The sLSTM recurrence (Beck et al., 2024) in plain PyTorch: one step, and the loop over time (the oracle of the
Triton kernels and the CPU path). Layout: gate pre-activations from the input wx [B, (T,) 4, H, K] in the gate
order (i, f, z, o); recurrent weights r [H, K, 4, K] (block-diagonal over heads: head h's r[h] maps h_{t-1}[h]
to its four gates); state (h, c, n, m), each [B, H, K].

    pre = wx_t + h_{t-1} r;  log f = logsigmoid(f~);  m_t = max(log f + m_{t-1}, i~)
    i' = exp(i~ - m_t);  f' = exp(log f + m_{t-1} - m_t)
    c_t = f' c_{t-1} + i' tanh(z~);  n_t = f' n_{t-1} + i';  h_t = sigmoid(o~) c_t / n_t
m is xLSTM's stabiliser: c and n carry a factor exp(-m_t) that cancels in h.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SLSTMState = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # (h, c, n, m), each [B, H, K]


def zero_state(B: int, H: int, K: int, device, dtype) -> SLSTMState:
    z = torch.zeros(B, H, K, device=device, dtype=dtype)
    return z, z.clone(), z.clone(), z.clone()


def slstm_cell(wx: torch.Tensor, r: torch.Tensor, state: SLSTMState) -> SLSTMState:
    """One step: wx [B, 4, H, K], r [H, K, 4, K], state -> new state (h, c, n, m)."""
    h, c, n, m = state
    pre = wx + torch.einsum("bhk,hkgj->bghj", h, r)
    i_, f_, z_, o_ = pre.unbind(1)
    log_f = F.logsigmoid(f_)
    m_new = torch.maximum(log_f + m, i_)
    i, f = torch.exp(i_ - m_new), torch.exp(log_f + m - m_new)
    c = f * c + i * torch.tanh(z_)
    n = f * n + i
    return torch.sigmoid(o_) * c / n, c, n, m_new


def slstm_scan_naive(wx: torch.Tensor, r: torch.Tensor, state: SLSTMState | None = None):
    """wx [B, T, 4, H, K], r [H, K, 4, K] -> (h [B, T, H, K], final state). Autograd through the loop."""
    B, _, _, H, K = wx.shape
    st = zero_state(B, H, K, wx.device, wx.dtype) if state is None else state
    hs = []
    for wx_t in wx.unbind(1):  # unbind: its backward stacks the step gradients (slicing would zero-fill T times)
        st = slstm_cell(wx_t, r, st)
        hs.append(st[0])
    return torch.stack(hs, 1), st
