"""The token-by-token forward kernel of the delta rule (kept here for importers of ``kernels``; the fused recurrent
forward and backward live in ``kernels_recurrent.py``, the chunked kernels in ``kernels_chunk.py``).

Only ``@triton.jit`` code (see ``_loader.py``). Layout (after ``api._normalize``): q [N, T, H, K],
k [N, T, n_h, H, K], v [N, T, n_h, H, V], beta [N, T, n_h, H], log_decay g [N, T, H], states fp32 [N, H, K, V].
"""

import triton
import triton.language as tl


@triton.jit(do_not_specialize=["T"])
def recurrent_fwd_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    beta_ptr,
    g_ptr,
    h0_ptr,
    o_ptr,
    ht_ptr,
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
    STORE_HT: tl.constexpr,
):
    """Token by token (decoding, short prefill). Grid (cdiv(V, BV), N * H); the state slice [K, BV] stays in
    registers: S <- g S; then per Householder S <- S + b k (v - S^T k)^T; o = scale S^T q."""
    i_v = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    n64 = i_n.to(tl.int64)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_kv = m_k[:, None] & m_v[None, :]
    p_kv = o_k[:, None] * V + o_v[None, :]
    b_S = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_H0:
        b_S = tl.load(h0_ptr + (n64 * H + i_h) * K * V + p_kv, mask=m_kv, other=0.0)
    t = 0
    while t < T:
        if USE_G:
            b_S = b_S * tl.exp(tl.load(g_ptr + (n64 * T + t) * H + i_h).to(tl.float32))
        for j in tl.static_range(NH):
            r = (n64 * T + t) * NH + j
            b_k = tl.load(k_ptr + (r * H + i_h) * K + o_k, mask=m_k, other=0.0).to(tl.float32)
            b_v = tl.load(v_ptr + (r * H + i_h) * V + o_v, mask=m_v, other=0.0).to(tl.float32)
            b_b = tl.load(beta_ptr + r * H + i_h).to(tl.float32)
            b_err = b_v - tl.sum(b_S * b_k[:, None], 0)
            b_S = b_S + (b_b * b_k)[:, None] * b_err[None, :]
        b_q = tl.load(q_ptr + ((n64 * T + t) * H + i_h) * K + o_k, mask=m_k, other=0.0).to(tl.float32)
        b_o = scale * tl.sum(b_S * b_q[:, None], 0)
        tl.store(o_ptr + ((n64 * T + t) * H + i_h) * V + o_v, b_o.to(o_ptr.dtype.element_ty), mask=m_v)
        t += 1
    if STORE_HT:
        tl.store(ht_ptr + (n64 * H + i_h) * K * V + p_kv, b_S, mask=m_kv)
