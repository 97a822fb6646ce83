"""Chunked (WY / UT-transform) delta rule in plain PyTorch: the CPU path, differentiable by autograd.

A DeltaProduct token with n_h Householders is n_h consecutive "sub-steps"; the gate acts on the first sub-step of
each token and the query reads the state after the last one. A chunk holds C tokens = L = C * n_h sub-steps.
Within a chunk (positions r, s = 1..L, cumulative log-gate gamma_r, Gamma_r = exp(gamma_r)) the writes
u_r = beta_r (v_r - S_{r-1}^T k_r) satisfy the unit lower-triangular system

    (I + A) U = diag(beta) V - diag(beta Gamma) K S_0,   A_rs = beta_r exp(gamma_r - gamma_s) k_r^T k_s  (s < r),

so U = U0 - W S_0 with [W | U0] = (I + A)^{-1} [diag(beta Gamma) K | diag(beta) V]. Outputs and the next state:

    o_r   = scale * (Gamma_r q_r^T S_0 + sum_{s <= r} exp(gamma_r - gamma_s) (q_r^T k_s) u_s)
    S_L   = Gamma_L S_0 + sum_s exp(gamma_L - gamma_s) k_s u_s^T.

The triangular solve runs in the compute dtype (fp32, or fp64 for fp64 inputs) whatever the input dtype: with
beta near 2 a bf16 inverse loses several digits (kernels.md 1.6). Decay ratios are formed as exp of differences,
never as quotients, so strong gates cannot produce 0/0.
"""

from __future__ import annotations

import torch


def _pad_time(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Zero-pad dim 1 (time) at the end. Zero k, beta and log-gate make padded steps the identity map."""
    if pad == 0:
        return x
    shape = list(x.shape)
    shape[1] = pad
    return torch.cat([x, x.new_zeros(shape)], dim=1)


def delta_rule_chunk(q, k, v, beta, log_decay, scale, initial_state, state_dtype, chunk_size: int = 64):
    """q [B, T, H, K]; k [B, T, n, H, K]; v [B, T, n, H, V]; beta [B, T, n, H]; log_decay [B, T, H] or None;
    initial_state [B, H, K, V] or None. Returns (o [B, T, H, V], final state [B, H, K, V]) in ``state_dtype``."""
    B, T, n, H, K = k.shape
    V = v.shape[-1]
    C = chunk_size
    dt = state_dtype
    NC = max(1, -(-T // C))
    pad = NC * C - T
    L = C * n

    q, k, v, beta = (_pad_time(x.to(dt), pad) for x in (q, k, v, beta))
    # [B, H, NC, L, D]: sub-step index within a chunk = token * n + j
    kc = k.permute(0, 3, 1, 2, 4).reshape(B, H, NC, L, K)
    vc = v.permute(0, 3, 1, 2, 4).reshape(B, H, NC, L, V)
    bc = beta.permute(0, 3, 1, 2).reshape(B, H, NC, L)
    qc = q.permute(0, 2, 1, 3).reshape(B, H, NC, C, K)
    last = torch.arange(C, device=q.device) * n + (n - 1)  # sub-step at which token i is read

    if log_decay is not None:
        g = q.new_zeros(B, T + pad, n, H)
        g[:, :T, 0] = log_decay.to(dt)
        gamma = g.permute(0, 3, 1, 2).reshape(B, H, NC, L).cumsum(-1)
    else:
        gamma = None

    causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
    strict = causal.clone().fill_diagonal_(False)
    kk = kc @ kc.transpose(-1, -2)
    if gamma is None:
        a = (bc[..., :, None] * kk).masked_fill(~strict, 0.0)
        rhs = torch.cat([bc[..., None] * kc, bc[..., None] * vc], dim=-1)
    else:
        diff = gamma[..., :, None] - gamma[..., None, :]
        a = bc[..., :, None] * kk * diff.masked_fill(~strict, float("-inf")).exp()
        rhs = torch.cat([(bc * gamma.exp())[..., None] * kc, bc[..., None] * vc], dim=-1)
    eye = torch.eye(L, dtype=dt, device=q.device)
    wu = torch.linalg.solve_triangular(eye + a, rhs, upper=False, unitriangular=True)
    w, u0 = wu[..., :K], wu[..., K:]

    qk = (qc @ kc.transpose(-1, -2)).masked_fill(~causal[last], 0.0)  # [B, H, NC, C, L]
    if gamma is None:
        k_end = kc
    else:
        g_q = gamma[..., last]  # [B, H, NC, C]
        qk = qk * (g_q[..., :, None] - gamma[..., None, :]).masked_fill(~causal[last], float("-inf")).exp()
        qc = qc * g_q.exp()[..., None]
        k_end = kc * (gamma[..., -1:] - gamma).exp()[..., None]
        chunk_decay = gamma[..., -1].exp()  # [B, H, NC]

    state = q.new_zeros(B, H, K, V) if initial_state is None else initial_state
    # unbind once: indexing inside the loop would make autograd add NC full-size zero gradients per tensor
    w_c, u0_c, k_end_c = w.unbind(2), u0.unbind(2), k_end.transpose(-1, -2).unbind(2)
    decay_c = None if gamma is None else chunk_decay[..., None, None].unbind(2)
    starts, writes = [], []
    for c in range(NC):
        starts.append(state)
        u = u0_c[c] - w_c[c] @ state
        writes.append(u)
        if decay_c is not None:
            state = state * decay_c[c]
        state = state + k_end_c[c] @ u
    s0 = torch.stack(starts, dim=2)  # [B, H, NC, K, V]
    u = torch.stack(writes, dim=2)  # [B, H, NC, L, V]
    o = (qc @ s0 + qk @ u) * scale  # [B, H, NC, C, V]
    o = o.reshape(B, H, NC * C, V)[:, :, :T].transpose(1, 2)
    return o, state
