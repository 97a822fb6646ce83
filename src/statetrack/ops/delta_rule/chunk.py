"""Chunked (WY / UT-transform) delta rule in plain PyTorch: the CPU path, with a hand-written backward.

A DeltaProduct token with n_h Householders is n_h consecutive "sub-steps"; the gate acts on the first sub-step of
each token and the query reads the state after the last one. A chunk holds C tokens = L = C * n_h sub-steps.
Within a chunk (positions r, s = 1..L, cumulative log-gate gamma_r, Gamma_r = exp(gamma_r)) the writes
u_r = beta_r (v_r - S_{r-1}^T k_r) satisfy the unit lower-triangular system

    (I + A) U = diag(beta) V - diag(beta Gamma) K S_0,   A_rs = beta_r exp(gamma_r - gamma_s) k_r^T k_s  (s < r),

so U = U0 - W S_0 with [W | U0] = (I + A)^{-1} [diag(beta Gamma) K | diag(beta) V]. Outputs and the next state:

    o_i   = scale * (Gamma_i q_i^T S_0 + sum_{s <= r_i} exp(gamma_{r_i} - gamma_s) (q_i^T k_s) u_s)   (r_i: last
            sub-step of token i)
    S_L   = Gamma_L S_0 + sum_s exp(gamma_L - gamma_s) k_s u_s^T.

The triangular solve runs in the compute dtype (fp32, or fp64 for fp64 inputs) whatever the input dtype: with
beta near 2 a bf16 inverse loses several digits (kernels.md 1.6). Decay ratios are formed as exp of differences,
never as quotients, so strong gates cannot produce 0/0.

The backward (``_ChunkDeltaRule.backward``) saves only the inputs, [W | U0] and the chunk-start states, recomputes
the cheap intra-chunk matrices, runs the adjoint state recursion over chunks in reverse, and does everything else
batched over chunks. It is checked against autograd through the naive loop in tests/ops/test_delta_rule.py.
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


class _Decays:
    """Masks and decay factors of one chunk layout. gamma [..., L] (cumulative log-gate) or None (no gate).

    d      [..., L, L]  exp(gamma_r - gamma_s) on the strict lower triangle, else 0
    dq     [..., C, L]  exp(gamma_{r_i} - gamma_s) for s <= r_i, else 0
    g      [..., L]     Gamma_s;  gq [..., C] Gamma_{r_i};  e [..., L] exp(gamma_L - gamma_s);  gl [...] Gamma_L
    Without a gate the factors are None and d, dq are 0/1 masks.
    """

    def __init__(self, gamma: torch.Tensor | None, last: torch.Tensor, L: int, dtype, device):
        causal = torch.ones(L, L, dtype=torch.bool, device=device).tril()
        self.strict = causal.clone().fill_diagonal_(False)
        self.qmask = causal[last]
        self.last = last
        if gamma is None:
            self.d, self.dq = self.strict.to(dtype), self.qmask.to(dtype)
            self.g = self.gq = self.e = self.gl = None
            return
        gq = gamma[..., last]
        self.d = (gamma[..., :, None] - gamma[..., None, :]).masked_fill(~self.strict, float("-inf")).exp()
        self.dq = (gq[..., :, None] - gamma[..., None, :]).masked_fill(~self.qmask, float("-inf")).exp()
        self.g, self.gq = gamma.exp(), gq.exp()
        self.e = (gamma[..., -1:] - gamma).exp()
        self.gl = gamma[..., -1].exp()


def _chunk_forward(qc, kc, vc, bc, dec: _Decays, h0, scale):
    """Returns o [NC, B, H, C, V], final state, [W | U0] [NC, B, H, L, K + V], chunk-start states [NC, B, H, K, V].

    Chunk-major layout: the per-chunk slices taken in the sequential loops are then contiguous, and batched
    matmuls on them need no copies."""
    K = kc.shape[-1]
    L = kc.shape[-2]
    a = bc[..., :, None] * (kc @ kc.transpose(-1, -2)) * dec.d
    bg = bc if dec.g is None else bc * dec.g
    rhs = torch.cat([bg[..., None] * kc, bc[..., None] * vc], dim=-1)
    eye = torch.eye(L, dtype=kc.dtype, device=kc.device)
    wu = torch.linalg.solve_triangular(eye + a, rhs, upper=False, unitriangular=True)
    w, u0 = wu[..., :K], wu[..., K:]
    k_end = kc if dec.e is None else kc * dec.e[..., None]

    state = h0
    starts, writes = [], []
    w_c, u0_c, kt_c = w.unbind(0), u0.unbind(0), k_end.transpose(-1, -2).unbind(0)
    gl_c = None if dec.gl is None else dec.gl[..., None, None].unbind(0)
    for c in range(len(w_c)):
        starts.append(state)
        u = u0_c[c] - w_c[c] @ state
        writes.append(u)
        if gl_c is not None:
            state = state * gl_c[c]
        state = state + kt_c[c] @ u
    s0, u = torch.stack(starts, dim=0), torch.stack(writes, dim=0)
    qg = qc if dec.gq is None else qc * dec.gq[..., None]
    p = (qc @ kc.transpose(-1, -2)) * dec.dq
    o = (qg @ s0 + p @ u) * scale
    return o, state, wu, s0


class _ChunkDeltaRule(torch.autograd.Function):
    """(qc, kc, vc, bc, gamma, h0) -> (o, final state); see the module docstring for the math."""

    @staticmethod
    def forward(ctx, qc, kc, vc, bc, gamma, h0, scale, last):
        dec = _Decays(gamma, last, kc.shape[-2], kc.dtype, kc.device)
        # autocast would run the matmuls (and the solve's operands) in bf16: the point of this path is fp32+
        with torch.autocast(kc.device.type, enabled=False):
            o, final, wu, s0 = _chunk_forward(qc, kc, vc, bc, dec, h0, scale)
        ctx.save_for_backward(qc, kc, vc, bc, gamma, wu, s0, last)
        ctx.scale = scale
        return o, final

    @staticmethod
    def backward(ctx, do, dfinal):
        with torch.autocast(do.device.type, enabled=False):
            return _ChunkDeltaRule._backward(ctx, do, dfinal)

    @staticmethod
    def _backward(ctx, do, dfinal):
        qc, kc, vc, bc, gamma, wu, s0, last = ctx.saved_tensors
        do = do.to(kc.dtype)  # under autocast the incoming gradient may be bf16
        dfinal = None if dfinal is None else dfinal.to(kc.dtype)
        scale = ctx.scale
        K, L = kc.shape[-1], kc.shape[-2]
        dec = _Decays(gamma, last, L, kc.dtype, kc.device)
        w, u0 = wu[..., :K], wu[..., K:]
        u = u0 - w @ s0
        kk = kc @ kc.transpose(-1, -2)
        qk = qc @ kc.transpose(-1, -2)
        p = qk * dec.dq
        qg = qc if dec.gq is None else qc * dec.gq[..., None]
        k_end = kc if dec.e is None else kc * dec.e[..., None]
        do = do * scale
        dfinal = torch.zeros_like(s0[0]) if dfinal is None else dfinal

        # adjoint of the state recursion, in reverse over chunks: dS_start = Gq Q^T dO + Gl dS_end - W^T dU
        du_local = p.transpose(-1, -2) @ do  # [NC, B, H, L, V]
        ds_local = qg.transpose(-1, -2) @ do  # [NC, B, H, K, V]
        ds = dfinal
        du_c, ds_end = [], []
        w_c, ke_c = w.unbind(0), k_end.unbind(0)
        gl_c = None if dec.gl is None else dec.gl[..., None, None].unbind(0)
        dul_c, dsl_c = du_local.unbind(0), ds_local.unbind(0)
        for c in reversed(range(len(w_c))):
            ds_end.append(ds)
            du = dul_c[c] + ke_c[c] @ ds
            du_c.append(du)
            ds = dsl_c[c] - w_c[c].transpose(-1, -2) @ du + (ds if gl_c is None else gl_c[c] * ds)
        dh0 = ds
        du = torch.stack(du_c[::-1], dim=0)
        dsend = torch.stack(ds_end[::-1], dim=0)

        # outputs: o = qg s0 + p u
        dqg = do @ s0.transpose(-1, -2)
        dp = do @ u.transpose(-1, -2)
        dqk = dp * dec.dq
        dq = (dqg if dec.gq is None else dqg * dec.gq[..., None]) + dqk @ kc
        dk = dqk.transpose(-1, -2) @ qc
        # next state: k_end^T u
        dke = u @ dsend.transpose(-1, -2)
        dk = dk + (dke if dec.e is None else dke * dec.e[..., None])
        # through the solve: [W | U0] = M^{-1} R, u = u0 - w s0
        dwu = torch.cat([-du @ s0.transpose(-1, -2), du], dim=-1)
        a = bc[..., :, None] * kk * dec.d
        eye = torch.eye(L, dtype=kc.dtype, device=kc.device)
        dr = torch.linalg.solve_triangular((eye + a).transpose(-1, -2), dwu, upper=True, unitriangular=True)
        da = -(dr @ wu.transpose(-1, -2)) * dec.strict
        drk, drv = dr[..., :K], dr[..., K:]
        bg = bc if dec.g is None else bc * dec.g
        dk = dk + bg[..., None] * drk
        dbg = (kc * drk).sum(-1)
        dv = bc[..., None] * drv
        dbeta = (vc * drv).sum(-1) + (da * kk * dec.d).sum(-1) + (dbg if dec.g is None else dbg * dec.g)
        dkk = da * (bc[..., :, None] * dec.d)
        dk = dk + (dkk + dkk.transpose(-1, -2)) @ kc

        dgamma = None
        if gamma is not None:
            t = da * bc[..., :, None] * kk * dec.d  # d/dgamma through A's decays
            dgamma = t.sum(-1) - t.sum(-2)
            t = dp * qk * dec.dq  # through the output decays
            dgq = t.sum(-1) + (dqg * qc).sum(-1) * dec.gq
            dgamma = dgamma - t.sum(-2) + dbg * bc * dec.g
            dgamma = dgamma.index_add(-1, last, dgq)
            t = (kc * dke).sum(-1) * dec.e  # through k_end = e k
            dgl = t.sum(-1) + (s0 * dsend).sum((-1, -2)) * dec.gl
            dgamma = dgamma - t
            dgamma[..., -1] += dgl
        return dq, dk, dv, dbeta, dgamma, dh0, None, None


# Compiled models run this eagerly: inductor failed on its length-dependent chunk shapes under dynamic=True
# (benchmarks/results/train_steps_h100_compile_torch.md), and its hand-written backward gains nothing from tracing.
@torch.compiler.disable
def delta_rule_chunk(q, k, v, beta, log_decay, scale, initial_state, state_dtype, chunk_size: int = 64):
    """q [B, T, H, K]; k [B, T, n, H, K]; v [B, T, n, H, V]; beta [B, T, n, H]; log_decay [B, T, H] or None;
    initial_state [B, H, K, V] or None. Returns (o [B, T, H, V], final state [B, H, K, V]) in ``state_dtype``."""
    B, T, n, H, K = k.shape
    V = v.shape[-1]
    C = min(chunk_size, max(T, 1))  # a sequence shorter than a chunk is one chunk of its own length
    dt = state_dtype
    NC = max(1, -(-T // C))
    pad = NC * C - T
    L = C * n

    q, k, v, beta = (_pad_time(x.to(dt), pad) for x in (q, k, v, beta))
    # chunk-major [NC, B, H, L, D]; sub-step index within a chunk = token * n + j
    kc = k.reshape(B, NC, L, H, K).permute(1, 0, 3, 2, 4).contiguous()
    vc = v.reshape(B, NC, L, H, V).permute(1, 0, 3, 2, 4).contiguous()
    bc = beta.reshape(B, NC, L, H).permute(1, 0, 3, 2).contiguous()
    qc = q.reshape(B, NC, C, H, K).permute(1, 0, 3, 2, 4).contiguous()
    last = torch.arange(C, device=q.device) * n + (n - 1)  # sub-step at which token i is read

    gamma = None
    if log_decay is not None:
        g = _pad_time(log_decay.to(dt), pad)[:, :, None]  # [B, T', 1, H]
        if n > 1:  # the gate acts on the first sub-step of each token
            g = torch.cat([g, g.new_zeros(B, T + pad, n - 1, H)], dim=2)
        gamma = g.reshape(B, NC, L, H).permute(1, 0, 3, 2).cumsum(-1)

    h0 = q.new_zeros(B, H, K, V) if initial_state is None else initial_state
    o, final = _ChunkDeltaRule.apply(qc, kc, vc, bc, gamma, h0, scale, last)
    o = o.permute(1, 0, 3, 2, 4).reshape(B, NC * C, H, V)[:, :T]
    return o, final
