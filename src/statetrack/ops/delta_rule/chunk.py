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

The backward (``_ChunkDeltaRule.backward``) uses the saved inputs, T, W, the writes U, the chunk-start states,
P = (Q K^T) * decays and K K^T * decays (nothing is recomputed), runs the adjoint state recursion over chunks in
reverse, and does everything else batched over chunks. Both passes are cache-blocked: they run group by group
(``CHUNK_GROUP`` chunks at a time), so that each group's operands are still cached for its next product. Through
the solve the backward needs only X = T^T dU: dR = [-X S_0^T | X] and dA = -X U^T. It is checked against autograd
through the naive loop in tests/ops/test_delta_rule.py.
"""

from __future__ import annotations

import torch

from .._cpu_buffers import pooled_buffer as _new
from ..prefix_sum import prefix_sum


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

    def part(self, c0: int, c1: int) -> _Decays:
        """The factors of chunks c0 .. c1 - 1 (the masks are shared)."""
        if self.g is None:
            return self
        out = object.__new__(_Decays)
        out.__dict__.update(self.__dict__)
        for name in ("d", "dq", "g", "gq", "e", "gl"):
            setattr(out, name, getattr(self, name)[c0:c1])
        return out


def _bmm3(x: torch.Tensor) -> torch.Tensor:
    """[..., m, n] -> [N, m, n]: a view for the chunk-major tensors here (and their transposes)."""
    return x.reshape(-1, *x.shape[-2:])


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


def _unit_lower_inverse(a: torch.Tensor, out: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """out = (I + a)^{-1} for strictly lower triangular a [N, L, L] (out [N, L, L] contiguous; scratch: at least
    4 N (L/2)^2 elements). For L >= 32, L even: the two diagonal blocks in one batched solve of half the size, then
    the off-diagonal block -T_22 A_21 T_11 by two matmuls. The batched solve is slow at these sizes (here ~3-5 us
    per 32 x 32 matrix, ~1 us per 16 x 16): this takes ~35% less time for L = 32, same results to rounding."""
    N, L = a.shape[0], a.shape[-1]
    if L < 32 or L % 2:
        eye = torch.eye(L, dtype=a.dtype, device=a.device)
        return torch.linalg.solve_triangular(a, eye.expand_as(a), upper=False, unitriangular=True, out=out)
    h = L // 2
    d = scratch[: 2 * N * h * h].view(2, N, h, h)
    td = scratch[2 * N * h * h : 4 * N * h * h].view(2, N, h, h)
    d.copy_(a.view(N, 2, h, 2, h).diagonal(dim1=1, dim2=3).permute(3, 0, 1, 2))
    eye = torch.eye(h, dtype=a.dtype, device=a.device)
    torch.linalg.solve_triangular(d, eye.expand_as(d), upper=False, unitriangular=True, out=td)
    out.view(N, 2, h, 2, h).diagonal(dim1=1, dim2=3).copy_(td.permute(1, 2, 3, 0))
    out[:, :h, h:].zero_()
    m = torch.bmm(a[:, h:, :h], td[0], out=d[0])
    torch.neg(torch.bmm(td[1], m, out=d[1]), out=out[:, h:, :h])
    return out


def _chunk_views(x: torch.Tensor, NC: int, L: int) -> torch.Tensor:
    """[B, NC * C, (n,) H, D] (time-major, as the caller has it) -> a chunk-major view [NC, B, H, L, D]."""
    return x.reshape(x.shape[0], NC, L, *x.shape[-2:]).permute(1, 0, 3, 2, 4)


def _groups(NC: int, G: int):
    """(c0, c1) ranges of G chunks (the last one may be shorter)."""
    return [(c0, min(c0 + G, NC)) for c0 in range(0, NC, G)]


class _Group:
    """Group-sized scratch buffers, reused by every group of one call (allocated once: fresh pages cost faults)."""

    def __init__(self, like: torch.Tensor, G: int, B: int, H: int):
        self.like, self.lead, self.bufs = like, (G, B, H), {}

    def __call__(self, name: str, g: int, *shape: int, extra: int = 0) -> torch.Tensor:
        """Buffer ``name`` [G + extra, B, H, *shape], its first g entries."""
        buf = self.bufs.get(name)
        if buf is None:
            G, B, H = self.lead
            buf = self.bufs[name] = _new(self.like, G + extra, B, H, *shape)
        return buf[:g]


def _chunk_forward(q, k, v, bc, dec: _Decays, h0, scale, C: int, G: int):
    """q [B, T', H, K], k [B, T', n, H, K], v [B, T', n, H, V] (T' = NC * C) in the compute dtype; bc [NC, B, H, L].
    Returns o [B, T', H, V], final state, and for the backward T = (I + A)^{-1} [NC, B, H, L, L], W [NC, B, H, L, K],
    the writes U [NC, B, H, L, V], the chunk-start states [NC, B, H, K, V], P = (Q K^T) * decays [NC, B, H, C, L]
    and K K^T * decays (strict lower triangle) [NC, B, H, L, L].

    Cache blocking: everything runs group by group (G chunks at a time, the intra-chunk work batched over the
    group, then the state recursion over its chunks, then its outputs), so that a group's operands are still in
    the caches when the next product needs them: the same batched matmuls streaming whole-sequence operands from
    memory run at about half the rate here. Per-chunk slices of the chunk-major buffers are contiguous, so the
    matmuls need no copies."""
    NC, B, H, L = bc.shape
    K, V = k.shape[-1], v.shape[-1]
    qv, kv, vv = _chunk_views(q, NC, C), _chunk_views(k, NC, L), _chunk_views(v, NC, L)
    o = _new(q, q.shape[0], NC * C, H, V)
    ov = _chunk_views(o, NC, C)
    tinv = _new(q, NC, B, H, L, L)
    kkd = _new(q, NC, B, H, L, L)
    w = _new(q, NC, B, H, L, K)
    u = _new(q, NC, B, H, L, V)
    p = _new(q, NC, B, H, C, L)
    states = _new(q, NC + 1, B, H, K, V)  # states[c] enters chunk c, states[NC] is the final state
    states[0] = h0
    w3, u3, s3 = w.flatten(1, 2), u.flatten(1, 2), states.flatten(1, 2)
    tmp = _Group(q, G, B, H)
    for c0, c1 in _groups(NC, G):
        g = c1 - c0
        dg = dec.part(c0, c1)
        # [K; Q] stacked: K K^T and Q K^T are one product (K^T read once)
        kq = tmp("kq", g, L + C, K)
        kc, qc = kq[..., :L, :].copy_(kv[c0:c1]), kq[..., L:, :].copy_(qv[c0:c1])
        vc = tmp("v", g, L, V).copy_(vv[c0:c1])
        bcg = bc[c0:c1]
        kqk = _mm(kq, kc.transpose(-1, -2), out=tmp("kqk", g, L + C, L))
        # K K^T times the decays on the strict lower triangle (zero elsewhere): kept for the backward
        kk = kkd[c0:c1]
        torch.tril(kqk[..., :L, :], -1, out=kk) if dg.g is None else torch.mul(kqk[..., :L, :], dg.d, out=kk)
        pg = torch.mul(kqk[..., L:, :], dg.dq, out=p[c0:c1])  # P = Q K^T * decays
        # A, exact on the strict lower triangle (all that the solve reads) and zero elsewhere
        a = torch.mul(kk, bcg[..., :, None], out=tmp("a", g, L, L))
        # T once (L right-hand sides), then matmuls: cheaper than solving for the K + V columns of [W | U0] and
        # than the transposed solve the backward would need
        tg = tinv[c0:c1]
        _unit_lower_inverse(_bmm3(a), _bmm3(tg), tmp("tri", g, L * L).view(-1))
        bgk = bcg if dg.g is None else torch.mul(bcg, dg.g, out=tmp("bg", g, L))
        _mm(tg, torch.mul(bgk[..., None], kc, out=tmp("bk", g, L, K)), out=w[c0:c1])
        _mm(tg, torch.mul(bcg[..., None], vc, out=tmp("bv", g, L, V)), out=u[c0:c1])  # U0; U = U0 - W S_0 below
        k_end = kc if dg.e is None else torch.mul(kc, dg.e[..., None], out=tmp("ke", g, L, K))
        kt3 = k_end.transpose(-1, -2).flatten(1, 2)
        gl = None if dg.gl is None else dg.gl.flatten(1, 2)[..., None, None]
        for i, c in enumerate(range(c0, c1)):
            u3[c].baddbmm_(w3[c], s3[c], alpha=-1)
            if gl is None:
                torch.baddbmm(s3[c], kt3[i], u3[c], out=s3[c + 1])
            else:
                torch.mul(s3[c], gl[i], out=s3[c + 1]).baddbmm_(kt3[i], u3[c])
        qg = qc if dg.gq is None else qc.mul_(dg.gq[..., None])
        og = _mm(qg, states[c0:c1], out=tmp("o", g, C, V))
        _bmm3(og).baddbmm_(_bmm3(pg), _bmm3(u[c0:c1]), beta=scale, alpha=scale)
        ov[c0:c1].copy_(og)
    return o, states[NC].clone(), tinv, w, u, states[:NC], p, kkd


class _ChunkDeltaRule(torch.autograd.Function):
    """(q, k, v, bc, gamma, h0) -> (o, final state); see the module docstring for the math. q, k, v and o are in
    the caller's time-major layout (T a multiple of C), bc and gamma chunk-major [NC, B, H, L]."""

    @staticmethod
    def forward(ctx, q, k, v, bc, gamma, h0, scale, last, C, G):
        dec = _Decays(gamma, last, bc.shape[-1], q.dtype, q.device)
        # autocast would run the matmuls (and the solve's operands) in bf16: the point of this path is fp32+
        with torch.autocast(q.device.type, enabled=False):
            o, final, tinv, w, u, s0, p, kkd = _chunk_forward(q, k, v, bc, dec, h0, scale, C, G)
        ctx.save_for_backward(q, k, v, bc, gamma, tinv, w, u, s0, p, kkd, last)
        ctx.scale, ctx.C, ctx.G = scale, C, G
        return o, final

    @staticmethod
    def backward(ctx, do, dfinal):
        with torch.autocast(do.device.type, enabled=False):
            return _ChunkDeltaRule._backward(ctx, do, dfinal)

    @staticmethod
    def _backward(ctx, do, dfinal):
        """Group by group in reverse (cache blocking, as in the forward): the adjoint state recursion over the
        group's chunks, then everything else of the group batched. Scratch is overwritten in place once its last
        use is past."""
        q, k, v, bc, gamma, tinv, w, u, s0, p, kkd, last = ctx.saved_tensors
        scale, C, G = ctx.scale, ctx.C, ctx.G
        NC, B, H, L = bc.shape
        K, V = k.shape[-1], v.shape[-1]
        dec = _Decays(gamma, last, L, q.dtype, q.device)
        gated = gamma is not None
        qv, kv, vv = _chunk_views(q, NC, C), _chunk_views(k, NC, L), _chunk_views(v, NC, L)
        dov = _chunk_views(do, NC, C)  # any strides, any float dtype (autocast): copied per group below
        dq_out, dk_out, dv_out = _new(q, *q.shape), _new(k, *k.shape), _new(v, *v.shape)
        dqv, dkv, dvv = _chunk_views(dq_out, NC, C), _chunk_views(dk_out, NC, L), _chunk_views(dv_out, NC, L)
        dbeta = _new(bc, *bc.shape)
        dgamma = _new(bc, *bc.shape) if gated else None
        neg_strict = torch.where(dec.strict, -1.0, 0.0).to(q.dtype)
        w3 = w.flatten(1, 2)
        tmp = _Group(q, G, B, H)
        # dS entering the current chunk, carried from group to group (dL/d final state at first)
        carry = q.new_zeros(B, H, K, V) if dfinal is None else dfinal.to(q.dtype)
        for c0, c1 in reversed(_groups(NC, G)):
            g = c1 - c0
            dg = dec.part(c0, c1)
            qc = tmp("q", g, C, K).copy_(qv[c0:c1])
            kc = tmp("k", g, L, K).copy_(kv[c0:c1])
            # [scale dO; X] stacked (X = T^T dU below): the products with S_0^T and U^T are one each
            dx = tmp("dx", g, C + L, V)
            dog = dx[..., :C, :]
            if do.dtype == q.dtype:
                torch.mul(dov[c0:c1], scale, out=dog)
            else:  # bf16 under autocast: scale in the compute dtype
                dog.copy_(dov[c0:c1]).mul_(scale)
            bcg, pg, ug, s0g, tg = bc[c0:c1], p[c0:c1], u[c0:c1], s0[c0:c1], tinv[c0:c1]
            qg = qc if dg.gq is None else torch.mul(qc, dg.gq[..., None], out=tmp("qg", g, C, K))
            k_end = kc if dg.e is None else torch.mul(kc, dg.e[..., None], out=tmp("ke", g, L, K))

            # adjoint of the state recursion, in reverse over chunks: dS_start = Gq Q^T dO + Gl dS_end - W^T dU.
            # ds[i] = dL/dS entering chunk c0 + i (ds[g] = carried in) starts as its local term Gq Q^T dO and du
            # as P^T dO; the loop adds the carried terms in place.
            ds = tmp("ds", g + 1, K, V, extra=1)
            _mm(qg.transpose(-1, -2), dog, out=ds[:g])
            ds[g] = carry
            du = _mm(pg.transpose(-1, -2), dog, out=tmp("du", g, L, V))
            ds3, du3, ke3 = ds.flatten(1, 2), du.flatten(1, 2), k_end.flatten(1, 2)
            gl = None if dg.gl is None else dg.gl.flatten(1, 2)[..., None, None]
            for i in reversed(range(g)):
                du3[i].baddbmm_(ke3[i], ds3[i + 1])
                if gl is None:
                    ds3[i].add_(ds3[i + 1])
                else:
                    ds3[i].addcmul_(gl[i], ds3[i + 1])
                ds3[i].baddbmm_(w3[c0 + i].transpose(-1, -2), du3[i], alpha=-1)
            carry = ds[0].clone()
            dsend = ds[1:]

            # through the solve: [W | U0] = T R, R = [diag(beta Gamma) K | diag(beta) V], and U = U0 - W S_0 give
            # dR = T^T [-dU S_0^T | dU] = [-X S_0^T | X] with X = T^T dU, and dA = -T^T d[W | U0] [W | U0]^T = -X U^T
            x = _mm(tg.transpose(-1, -2), du, out=tmp("x", g, L, V))
            dx[..., C:, :] = x
            # outputs, o = scale * (qg s0 + p u): [dq (d/dqg); y] = [scale dO; X] S_0^T (y = -dR for the keys) and
            # [dP; -dA] = [scale dO; X] U^T
            dxs = _mm(dx, s0g.transpose(-1, -2), out=tmp("dxs", g, C + L, K))
            dxu = _mm(dx, ug.transpose(-1, -2), out=tmp("dxu", g, C + L, L))
            dq, y = dxs[..., :C, :], dxs[..., C:, :]
            dqk, da = dxu[..., :C, :], dxu[..., C:, :].mul_(neg_strict)
            if gated:
                t_out = dqk * pg  # dP * P: the gradient of the output decays
                dgq = (dq * qc).sum(-1) * dg.gq
                dq.mul_(dg.gq[..., None])
            dqk.mul_(dg.dq)  # dP * mask
            torch.add(dq, _mm(dqk, kc, out=tmp("dq", g, C, K)), out=dqv[c0:c1])
            dk = _mm(dqk.transpose(-1, -2), qc, out=tmp("dk", g, L, K))
            # next state: k_end^T u
            if gated:
                dke = _mm(ug, dsend.transpose(-1, -2), out=tmp("dke", g, L, K))
                dk.addcmul_(dke, dg.e[..., None])
            else:
                _bmm3(dk).baddbmm_(_bmm3(ug), _bmm3(dsend.transpose(-1, -2)))
            bg = bcg if dg.g is None else bcg * dg.g
            dk.addcmul_(bg[..., None], y, value=-1)
            dbg = y.mul_(kc).sum(-1).neg_()
            vc = tmp("v", g, L, V).copy_(vv[c0:c1])
            db = torch.sum(torch.mul(vc, x, out=vc), -1, out=dbeta[c0:c1])
            db += dbg if dg.g is None else dbg * dg.g
            da_kkd = torch.mul(kkd[c0:c1], da, out=tmp("dakkd", g, L, L))  # dA * K K^T * decays
            db += da_kkd.sum(-1)
            dkk = da.mul_(bcg[..., :, None]) if dg.g is None else da.mul_(bcg[..., :, None] * dg.d)
            # A is symmetric in the keys: one matmul for both sides (dkk is strictly lower triangular)
            dkk2 = torch.add(dkk, dkk.transpose(-1, -2), out=tmp("dkk2", g, L, L))
            _bmm3(dk).baddbmm_(_bmm3(dkk2), _bmm3(kc))
            dkv[c0:c1].copy_(dk)
            torch.mul(x, bcg[..., None], out=dvv[c0:c1])

            if gated:
                t = da_kkd.mul_(bcg[..., :, None])  # d/dgamma through A's decays
                dgm = t.sum(-1) - t.sum(-2)
                t = t_out  # through the output decays
                dgq += t.sum(-1)
                dgm = dgm - t.sum(-2) + dbg * bcg * dg.g
                dgm = dgm.index_add(-1, last, dgq)
                t = (kc * dke).sum(-1) * dg.e  # through k_end = e k
                dgl = t.sum(-1) + (s0g * dsend).sum((-1, -2)) * dg.gl
                dgm = dgm - t
                dgm[..., -1] += dgl
                dgamma[c0:c1] = dgm
        return dq_out, dk_out, dv_out, dbeta, dgamma, carry, None, None, None, None


def default_chunk_size(device: torch.device) -> int:
    """Tokens per chunk when the caller gives none: 32 on a CPU (fwd+bwd at B=8, T=2048, H=4, K=V=64 on 2 cores,
    cache-blocked passes: 64 is ~15% slower, its larger intra-chunk matmuls cost more than the half as many loop
    steps save; 16 is within noise of 32), 64 elsewhere."""
    return 32 if torch.device(device).type == "cpu" else 64


# Chunks per group of the cache-blocked passes (a group's operands, ~10 MB at 4 chunks of 32 with B * H = 32 and
# K = V = 64, stay in the L2/L3 caches between its products). At B=8, T=2048, H=4, K=V=64 on 2 cores, 2 to 8 were
# within noise of each other and 1 ~10% slower (Python overhead per group).
CHUNK_GROUP = 4


# Compiled models run this eagerly: inductor failed on its length-dependent chunk shapes under dynamic=True
# (docs/kernels.md, "Which path runs", compiled callers), and its hand-written backward gains nothing from tracing.
@torch.compiler.disable
def delta_rule_chunk(q, k, v, beta, log_decay, scale, initial_state, state_dtype, chunk_size: int = 64):
    """q [B, T, H, K]; k [B, T, n, H, K]; v [B, T, n, H, V]; beta [B, T, n, H]; log_decay [B, T, H] or None;
    initial_state [B, H, K, V] or None. Returns (o [B, T, H, V], final state [B, H, K, V]) in ``state_dtype``."""
    B, T, n, H, K = k.shape
    V = v.shape[-1]
    C = min(chunk_size, max(T, 1))  # a sequence shorter than a chunk is one chunk of its own length
    NC = max(1, -(-T // C))
    pad = NC * C - T
    L = C * n

    q, k, v, beta = (_pad_time(x.to(state_dtype), pad) for x in (q, k, v, beta))
    bc = beta.reshape(B, NC, L, H).permute(1, 0, 3, 2).contiguous()  # chunk-major [NC, B, H, L]
    last = torch.arange(C, device=q.device) * n + (n - 1)  # sub-step at which token i is read

    gamma = None
    if log_decay is not None:
        g = _pad_time(log_decay.to(state_dtype), pad)[:, :, None]  # [B, T', 1, H]
        if n > 1:  # the gate acts on the first sub-step of each token
            g = torch.cat([g, g.new_zeros(B, T + pad, n - 1, H)], dim=2)
        gamma = prefix_sum(g.reshape(B, NC, L, H).permute(1, 0, 3, 2), -1)

    h0 = q.new_zeros(B, H, K, V) if initial_state is None else initial_state
    o, final = _ChunkDeltaRule.apply(q, k, v, bc, gamma, h0, scale, last, C, CHUNK_GROUP)
    return o[:, :T], final
