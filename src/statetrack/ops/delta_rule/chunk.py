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
beta near 2 a bf16 inverse loses several digits (kernels.md 1.6). It computes T = (I + A)^{-1} once (L right-hand
sides); [W | U0] = T R and the backward's T^T dU are then batched matmuls, cheaper than a solve for the K + V
columns and a transposed solve. Decay ratios are formed as exp of differences, never as quotients, so strong gates
cannot produce 0/0.

The backward (``_ChunkDeltaRule.backward``) saves the inputs, T, W, the writes U and the chunk-start states,
recomputes the cheap intra-chunk matrices, runs the adjoint state recursion over chunks in reverse, and does
everything else batched over chunks. Through the solve it needs only X = T^T dU: dR = [-X S_0^T | X] and
dA = -X U^T. It is checked against autograd through the naive loop in tests/ops/test_delta_rule.py.
"""

from __future__ import annotations

import torch

from ..diag_scan.scan import empty_buffer


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


def _bmm3(x: torch.Tensor) -> torch.Tensor:
    """[..., m, n] -> [N, m, n]: a view for the chunk-major tensors here (and their transposes)."""
    return x.reshape(-1, *x.shape[-2:])


def _new(like: torch.Tensor, *shape: int) -> torch.Tensor:
    """Uninitialised buffer, on huge pages on the CPU (first-touch page faults of fresh buffers cost up to a third
    of the fwd+bwd CPU time at B=8, T=2048, H=4, K=V=64)."""
    return empty_buffer(shape, like.dtype, like.device)


def _mm(a: torch.Tensor, b: torch.Tensor, alpha: float = 1.0, out: torch.Tensor | None = None) -> torch.Tensor:
    """alpha * a @ b for operands with the same leading dims, into ``out`` (contiguous) or a new buffer."""
    if out is None:
        out = _new(a, *a.shape[:-1], b.shape[-1])
    o3 = _bmm3(out)
    if alpha == 1.0:
        torch.bmm(_bmm3(a), _bmm3(b), out=o3)
    else:
        o3.baddbmm_(_bmm3(a), _bmm3(b), beta=0.0, alpha=alpha)
    return out


def _chunk_forward(qc, kc, vc, bc, dec: _Decays, h0, scale):
    """Returns o [NC, B, H, C, V], final state, T = (I + A)^{-1} [NC, B, H, L, L], W [NC, B, H, L, K],
    the writes U [NC, B, H, L, V] and the chunk-start states [NC, B, H, K, V].

    Chunk-major layout: the per-chunk slices taken in the sequential loops are then contiguous, and batched
    matmuls on them need no copies."""
    NC, B, H, L, K = kc.shape
    V = vc.shape[-1]
    a = _mm(kc, kc.transpose(-1, -2))
    # A, exact on the strict lower triangle (all that the solve reads) and zero elsewhere
    (a.tril_(-1) if dec.g is None else a.mul_(dec.d)).mul_(bc[..., :, None])
    eye = torch.eye(L, dtype=kc.dtype, device=kc.device)
    # T once (L right-hand sides), then matmuls: cheaper than solving for the K + V columns of [W | U0] here and
    # than the transposed solve the backward would need
    tinv = torch.linalg.solve_triangular(a, eye.expand_as(a), upper=False, unitriangular=True, out=_new(a, *a.shape))
    bk = torch.mul(bc[..., None] if dec.g is None else (bc * dec.g)[..., None], kc, out=_new(kc, *kc.shape))
    w = _mm(tinv, bk)
    bv = bk if V == K else _new(vc, *vc.shape)
    u = _mm(tinv, torch.mul(bc[..., None], vc, out=bv))  # U0; the loop turns it into U = U0 - W S_0 in place
    del bk, bv
    k_end = kc if dec.e is None else kc * dec.e[..., None]

    # states[c] enters chunk c, states[NC] is the final state
    states = _new(kc, NC + 1, B, H, K, V)
    states[0] = h0
    w3, u3, s3 = w.flatten(1, 2), u.flatten(1, 2), states.flatten(1, 2)
    kt3 = k_end.transpose(-1, -2).flatten(1, 2)
    gl = None if dec.gl is None else dec.gl.flatten(1, 2)[..., None, None]
    for c in range(NC):
        u3[c].baddbmm_(w3[c], s3[c], alpha=-1)
        if gl is None:
            torch.baddbmm(s3[c], kt3[c], u3[c], out=s3[c + 1])
        else:
            torch.mul(s3[c], gl[c], out=s3[c + 1]).baddbmm_(kt3[c], u3[c])
    s0 = states[:NC]
    qg = qc if dec.gq is None else qc * dec.gq[..., None]
    p = _mm(qc, kc.transpose(-1, -2)).mul_(dec.dq)
    o = _mm(qg, s0)
    _bmm3(o).baddbmm_(_bmm3(p), _bmm3(u), beta=scale, alpha=scale)
    return o, states[NC].clone(), tinv, w, u, s0


class _ChunkDeltaRule(torch.autograd.Function):
    """(qc, kc, vc, bc, gamma, h0) -> (o, final state); see the module docstring for the math."""

    @staticmethod
    def forward(ctx, qc, kc, vc, bc, gamma, h0, scale, last):
        dec = _Decays(gamma, last, kc.shape[-2], kc.dtype, kc.device)
        # autocast would run the matmuls (and the solve's operands) in bf16: the point of this path is fp32+
        with torch.autocast(kc.device.type, enabled=False):
            o, final, tinv, w, u, s0 = _chunk_forward(qc, kc, vc, bc, dec, h0, scale)
        ctx.save_for_backward(qc, kc, vc, bc, gamma, tinv, w, u, s0, last)
        ctx.scale = scale
        return o, final

    @staticmethod
    def backward(ctx, do, dfinal):
        with torch.autocast(do.device.type, enabled=False):
            return _ChunkDeltaRule._backward(ctx, do, dfinal)

    @staticmethod
    def _backward(ctx, do, dfinal):
        """Intermediates are overwritten in place once their last use is past (fresh buffers cost page faults)."""
        qc, kc, vc, bc, gamma, tinv, w, u, s0, last = ctx.saved_tensors
        do = do.to(kc.dtype)  # under autocast the incoming gradient may be bf16
        scale = ctx.scale
        NC, B, H, L, K = kc.shape
        dec = _Decays(gamma, last, L, kc.dtype, kc.device)
        gated = gamma is not None
        qk = _mm(qc, kc.transpose(-1, -2))
        p = qk * dec.dq if gated else qk.mul_(dec.dq)  # the gate's gradient needs qk itself
        qg = qc if dec.gq is None else qc * dec.gq[..., None]
        k_end = kc if dec.e is None else kc * dec.e[..., None]

        # adjoint of the state recursion, in reverse over chunks: dS_start = Gq Q^T dO + Gl dS_end - W^T dU.
        # ds[c] = dL/dS entering chunk c (ds[NC] = dL/d final) starts as its local term Gq Q^T dO and du as
        # P^T dO; the loop adds the carried terms in place.
        ds = _new(kc, NC + 1, *s0.shape[1:])
        _mm(qg.transpose(-1, -2), do, scale, out=ds[:NC])
        if dfinal is None:
            ds[NC].zero_()
        else:
            ds[NC] = dfinal
        du = _mm(p.transpose(-1, -2), do, scale)  # [NC, B, H, L, V]
        del p
        ds3, du3, w3, ke3 = ds.flatten(1, 2), du.flatten(1, 2), w.flatten(1, 2), k_end.flatten(1, 2)
        gl = None if dec.gl is None else dec.gl.flatten(1, 2)[..., None, None]
        for c in reversed(range(NC)):
            du3[c].baddbmm_(ke3[c], ds3[c + 1])
            if gl is None:
                ds3[c].add_(ds3[c + 1])
            else:
                ds3[c].addcmul_(gl[c], ds3[c + 1])
            ds3[c].baddbmm_(w3[c].transpose(-1, -2), du3[c], alpha=-1)
        dh0 = ds[0].clone()
        dsend = ds[1:]

        # outputs: o = scale * (qg s0 + p u)
        dq = _mm(do, s0.transpose(-1, -2), scale)  # d/dqg
        dqk = _mm(do, u.transpose(-1, -2), scale).mul_(dec.dq)  # dP * mask
        if gated:
            dgq = (dq * qc).sum(-1) * dec.gq
            dq.mul_(dec.gq[..., None])
        _bmm3(dq).baddbmm_(_bmm3(dqk), _bmm3(kc))
        dk = _mm(dqk.transpose(-1, -2), qc)
        # next state: k_end^T u
        if gated:
            dke = _mm(u, dsend.transpose(-1, -2))
            dk.addcmul_(dke, dec.e[..., None])
        else:
            _bmm3(dk).baddbmm_(_bmm3(u), _bmm3(dsend.transpose(-1, -2)))
        # through the solve: [W | U0] = T R, R = [diag(beta Gamma) K | diag(beta) V], and U = U0 - W S_0 give
        # dR = T^T [-dU S_0^T | dU] = [-X S_0^T | X] with X = T^T dU, and dA = -T^T d[W | U0] [W | U0]^T = -X U^T
        x = _mm(tinv.transpose(-1, -2), du)
        del du
        y = _mm(x, s0.transpose(-1, -2))  # -dR for the keys
        da = _mm(x, u.transpose(-1, -2)).mul_(torch.where(dec.strict, -1.0, 0.0).to(kc.dtype))
        bg = bc if dec.g is None else bc * dec.g
        dk.addcmul_(bg[..., None], y, value=-1)
        dbg = y.mul_(kc).sum(-1).neg_()
        dbeta = torch.mul(vc, x, out=y if vc.shape[-1] == K else None).sum(-1)
        dbeta += dbg if dec.g is None else dbg * dec.g
        del y
        kk = _mm(kc, kc.transpose(-1, -2))
        da_kkd = kk.mul_(da) if dec.g is None else kk.mul_(da).mul_(dec.d)  # dA * K K^T * decays
        dbeta += da_kkd.sum(-1)
        dkk = da.mul_(bc[..., :, None]) if dec.g is None else da.mul_(bc[..., :, None] * dec.d)
        _bmm3(dk).baddbmm_(_bmm3(dkk), _bmm3(kc))
        _bmm3(dk).baddbmm_(_bmm3(dkk.transpose(-1, -2)), _bmm3(kc))
        dv = x.mul_(bc[..., None])

        dgamma = None
        if gated:
            t = da_kkd.mul_(bc[..., :, None])  # d/dgamma through A's decays
            dgamma = t.sum(-1) - t.sum(-2)
            t = dqk.mul_(qk)  # through the output decays
            dgq += t.sum(-1)
            dgamma = dgamma - t.sum(-2) + dbg * bc * dec.g
            dgamma = dgamma.index_add(-1, last, dgq)
            t = (kc * dke).sum(-1) * dec.e  # through k_end = e k
            dgl = t.sum(-1) + (s0 * dsend).sum((-1, -2)) * dec.gl
            dgamma = dgamma - t
            dgamma[..., -1] += dgl
        return dq, dk, dv, dbeta, dgamma, dh0, None, None


def default_chunk_size(device: torch.device) -> int:
    """Tokens per chunk when the caller gives none: 32 on a CPU (fwd+bwd at B=8, T=2048, H=4, K=V=64 on 2 cores:
    ~10-15% faster than 64, whose larger intra-chunk matmuls cost more than the twice as many loop steps save;
    16 is slower again), 64 elsewhere."""
    return 32 if torch.device(device).type == "cpu" else 64


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
