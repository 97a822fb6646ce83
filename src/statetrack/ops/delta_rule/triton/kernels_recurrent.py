"""Fused recurrent delta rule: forward and backward, one token after another with the state in registers.

Only ``@triton.jit`` code (see ``_loader.py``). For short sequences (the state-tracking tasks: T ~ 40-256, many
sequences, small heads), where a chunked pipeline's launches and setup cost more than the recurrence itself.

Layout (after ``api._normalize``): q [N, T, H, K], k [N, T, n_h, H, K], v [N, T, n_h, H, V], beta [N, T, n_h, H],
g = log-decay [N, T, H]; with ``cu_seqlens`` (USE_CU) N = 1 and sequence i is rows cu[i] .. cu[i+1] of T.
States are fp32 [NS, H, K, V] (NS sequences). A program owns one (sequence, head, V-block): the columns of the
state evolve independently (S[:, c] <- g S[:, c] + beta k (v_c - k . S[:, c])), so V-blocks never talk; only the
K-vectors dq and dk sum over V, and are written as per-V-block partials [NV, ...].

Per token t: S <- g_t S; for j < n_h: r_j = v_j - S^T k_j, S <- S + beta_j k_j r_j^T; o_t = scale S^T q_t.
Backward (dS = dL/dS, walking back): dS += scale q do^T; per sub-step, last first: dk += dS (beta r),
du = dS^T k, dbeta = du . r, dv = dr = beta du, dS <- dS - k dr^T; then dS <- g dS. The terms that need the state
itself, dq = scale S_t do_t and dk -= S_before dr, come from a second forward walk once dr (= dv) is known.
The gate's gradient needs no walk at all (see ``recurrent.py``).
"""

import triton
import triton.language as tl


@triton.jit
def _seq_bounds(cu_ptr, i_n, T, USE_CU: tl.constexpr):
    """First row and length of sequence i_n (int64 row index into the [N * T] token axis)."""
    if USE_CU:
        bos = tl.load(cu_ptr + i_n).to(tl.int64)
        eos = tl.load(cu_ptr + i_n + 1).to(tl.int64)
        return bos, (eos - bos).to(tl.int32)
    return i_n.to(tl.int64) * T, T


@triton.jit(do_not_specialize=["T"])
def recurrent_fwd_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    beta_ptr,
    g_ptr,
    h0_ptr,
    cu_ptr,
    o_ptr,
    ht_ptr,
    r_ptr,
    scale,
    T,
    H: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    NH: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    USE_G: tl.constexpr,
    USE_H0: tl.constexpr,
    USE_CU: tl.constexpr,
    STORE_HT: tl.constexpr,
    STORE_R: tl.constexpr,
):
    """Grid (cdiv(V, BV), NS * H). Writes o [rows, H, V], optionally the final state and r = v - S^T k
    [rows, n_h, H, V] fp32 (the backward's input)."""
    i_v = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    bos, L = _seq_bounds(cu_ptr, i_n, T, USE_CU)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_kv = m_k[:, None] & m_v[None, :]
    p_kv = o_k[:, None] * V + o_v[None, :]
    b_S = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_H0:
        b_S = tl.load(h0_ptr + i_nh.to(tl.int64) * K * V + p_kv, mask=m_kv, other=0.0)
    t = 0
    while t < L:
        row = bos + t
        if USE_G:
            b_S = b_S * tl.exp(tl.load(g_ptr + row * H + i_h).to(tl.float32))
        for j in tl.static_range(NH):
            r = (row * NH + j) * H + i_h
            b_k = tl.load(k_ptr + r * K + o_k, mask=m_k, other=0.0).to(tl.float32)
            b_v = tl.load(v_ptr + r * V + o_v, mask=m_v, other=0.0).to(tl.float32)
            b_b = tl.load(beta_ptr + r).to(tl.float32)
            b_r = b_v - tl.sum(b_S * b_k[:, None], 0)
            if STORE_R:
                tl.store(r_ptr + r * V + o_v, b_r, mask=m_v)
            b_S = b_S + (b_b * b_k)[:, None] * b_r[None, :]
        b_q = tl.load(q_ptr + (row * H + i_h) * K + o_k, mask=m_k, other=0.0).to(tl.float32)
        b_o = scale * tl.sum(b_S * b_q[:, None], 0)
        tl.store(o_ptr + (row * H + i_h) * V + o_v, b_o.to(o_ptr.dtype.element_ty), mask=m_v)
        t += 1
    if STORE_HT:
        tl.store(ht_ptr + i_nh.to(tl.int64) * K * V + p_kv, b_S, mask=m_kv)


@triton.jit(do_not_specialize=["T", "ROWS"])
def recurrent_bwd_kernel(
    q_ptr,
    k_ptr,
    beta_ptr,
    g_ptr,
    h0_ptr,
    cu_ptr,
    r_ptr,
    do_ptr,
    dht_ptr,
    dq_ptr,
    dk_ptr,
    dv_ptr,
    db_ptr,
    dh0_ptr,
    scale,
    T,
    ROWS,
    H: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    NH: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    USE_G: tl.constexpr,
    USE_H0: tl.constexpr,
    USE_CU: tl.constexpr,
    USE_DHT: tl.constexpr,
):
    """Grid (NV = cdiv(V, BV), NS * H). Reverse walk: dv [rows, n_h, H, V] (final), partial dk and dbeta
    [NV, rows, n_h, H(, K)], dh0 [NS, H, K, V]; then a forward walk adds -S_before dv to dk and writes partial
    dq [NV, rows, H, K]. All fp32."""
    i_v = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    bos, L = _seq_bounds(cu_ptr, i_n, T, USE_CU)
    part = i_v.to(tl.int64) * ROWS  # offset of this V-block's partials, in token rows
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_kv = m_k[:, None] & m_v[None, :]
    p_kv = o_k[:, None] * V + o_v[None, :]

    b_dS = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_DHT:
        b_dS = tl.load(dht_ptr + i_nh.to(tl.int64) * K * V + p_kv, mask=m_kv, other=0.0)
    t = L - 1
    while t >= 0:
        row = bos + t
        b_q = tl.load(q_ptr + (row * H + i_h) * K + o_k, mask=m_k, other=0.0).to(tl.float32)
        b_do = tl.load(do_ptr + (row * H + i_h) * V + o_v, mask=m_v, other=0.0).to(tl.float32)
        b_dS = b_dS + (scale * b_q)[:, None] * b_do[None, :]
        for jj in tl.static_range(NH):
            j = NH - 1 - jj
            r = (row * NH + j) * H + i_h
            b_k = tl.load(k_ptr + r * K + o_k, mask=m_k, other=0.0).to(tl.float32)
            b_b = tl.load(beta_ptr + r).to(tl.float32)
            b_r = tl.load(r_ptr + r * V + o_v, mask=m_v, other=0.0)
            b_dk = tl.sum(b_dS * (b_b * b_r)[None, :], 1)
            b_du = tl.sum(b_dS * b_k[:, None], 0)
            b_dr = b_b * b_du
            tl.store(dk_ptr + ((part * NH) * H + r) * K + o_k, b_dk, mask=m_k)
            tl.store(db_ptr + (part * NH) * H + r, tl.sum(b_du * b_r, 0))
            tl.store(dv_ptr + r * V + o_v, b_dr, mask=m_v)
            b_dS = b_dS - b_k[:, None] * b_dr[None, :]
        if USE_G:
            b_dS = b_dS * tl.exp(tl.load(g_ptr + row * H + i_h).to(tl.float32))
        t -= 1
    if USE_H0:
        tl.store(dh0_ptr + i_nh.to(tl.int64) * K * V + p_kv, b_dS, mask=m_kv)

    # the forward walk reads back dv and dk written above by other threads of this program
    tl.debug_barrier()
    b_S = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_H0:
        b_S = tl.load(h0_ptr + i_nh.to(tl.int64) * K * V + p_kv, mask=m_kv, other=0.0)
    t = 0
    while t < L:
        row = bos + t
        if USE_G:
            b_S = b_S * tl.exp(tl.load(g_ptr + row * H + i_h).to(tl.float32))
        for j in tl.static_range(NH):
            r = (row * NH + j) * H + i_h
            b_k = tl.load(k_ptr + r * K + o_k, mask=m_k, other=0.0).to(tl.float32)
            b_b = tl.load(beta_ptr + r).to(tl.float32)
            b_r = tl.load(r_ptr + r * V + o_v, mask=m_v, other=0.0)
            b_dv = tl.load(dv_ptr + r * V + o_v, mask=m_v, other=0.0)
            p_dk = dk_ptr + ((part * NH) * H + r) * K + o_k
            b_dk = tl.load(p_dk, mask=m_k, other=0.0) - tl.sum(b_S * b_dv[None, :], 1)
            tl.store(p_dk, b_dk, mask=m_k)
            b_S = b_S + (b_b * b_k)[:, None] * b_r[None, :]
        b_do = tl.load(do_ptr + (row * H + i_h) * V + o_v, mask=m_v, other=0.0).to(tl.float32)
        b_dq = scale * tl.sum(b_S * b_do[None, :], 1)
        tl.store(dq_ptr + ((part + row) * H + i_h) * K + o_k, b_dq, mask=m_k)
        t += 1
