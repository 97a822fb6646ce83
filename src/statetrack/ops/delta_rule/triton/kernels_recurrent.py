"""Fused recurrent delta rule: forward and backward, one token after another with the state in registers.

Only ``@triton.jit`` code (see ``ops/_triton.py``). For short sequences (the state-tracking tasks: T ~ 40-256,
many sequences, small heads), where a chunked pipeline's launches and setup cost more than the recurrence itself.

Layout (after ``inputs.normalize``): q [N, T, H, K], k [N, T, n_h, H, K], v [N, T, n_h, H, V], beta [N, T, n_h, H],
g = log-decay [N, T, H]; with ``cu_seqlens`` (USE_CU) N = 1 and sequence i is rows cu[i] .. cu[i+1] of T.
States are fp32 [NS, H, K, V] (NS sequences). A program owns one (sequence, head, V-block): the columns of the
state evolve independently (S[:, c] <- g S[:, c] + beta k (v_c - k . S[:, c])), so V-blocks never talk; only the
K-vectors dq and dk sum over V, and are written as per-V-block partials [NV, ...].

Per token t: S <- g_t S; for j < n_h: r_j = v_j - S^T k_j, S <- S + beta_j k_j r_j^T; o_t = scale S^T q_t.
Backward (dS = dL/dS, walking back): dS += scale q do^T; per sub-step, last first: dk += dS (beta r),
du = dS^T k, dbeta = du . r, dv = dr = beta du, dS <- dS - k dr^T; then dS <- g dS. The terms that need the state
itself, dq = scale S_t do_t and dk -= S_before dr, come from a second forward walk once dr (= dv) is known.
The gate's gradient needs no walk at all (see ``recurrent.py``).

Why blocks of BT tokens: one token's work is a few hundred register operations, far less than a trip to memory.
So the inputs of BT tokens are loaded at once as [BT (x n_h), .] tiles, the walk picks its rows out of registers
(a masked sum: no dynamic register indexing in Triton) and collects its outputs the same way, and memory is
touched once per block. Rows past a sequence's end load as zeros (k = v = beta = log g = 0), which is an identity
step, so the walk needs no branch; their outputs are masked at the store.
"""

import triton
import triton.language as tl

from .tiles import load_tile, seq_head, store_tile


@triton.jit
def _seq_bounds(cu_ptr, n64, T, USE_CU: tl.constexpr):
    """First row and length of sequence n64 (int64 row index into the [N * T] token axis)."""
    if USE_CU:
        bos = tl.load(cu_ptr + n64).to(tl.int64)
        eos = tl.load(cu_ptr + n64 + 1).to(tl.int64)
        L = (eos - bos).to(tl.int32)
    else:
        bos = n64 * T
        L = T
    return bos, L


@triton.jit
def _pick(tile, sel):
    """Row ``sel`` (a boolean vector over the tile's rows, one True) of a [R, C] register tile -> [C]."""
    return tl.sum(tl.where(sel[:, None], tile, 0.0), 0)


@triton.jit
def _pick1(vec, sel):
    """Entry ``sel`` (a boolean vector, one True) of a register vector [R] -> a scalar."""
    return tl.sum(tl.where(sel, vec, 0.0), 0)


@triton.jit
def _put(tile, sel, row):
    """The tile with row ``sel`` replaced by ``row`` [C]."""
    return tl.where(sel[:, None], row[None, :], tile)


@triton.jit
def _block(t0, bos, L, i_h, H: tl.constexpr, NH: tl.constexpr, BT: tl.constexpr, BR: tl.constexpr):
    """Index vectors of the block of tokens t0 .. t0 + BT: token rows (o_t, their global row index and mask) and
    sub-step rows (o_r = token * NH + j, global index and mask)."""
    o_t = tl.arange(0, BT)
    m_t = (t0 + o_t) < L
    g_t = (bos + t0 + o_t) * H + i_h
    o_r = tl.arange(0, BR)
    m_r = (o_r < BT * NH) & ((t0 + o_r // NH) < L)
    g_r = ((bos + t0) * NH + o_r) * H + i_h
    return o_t, m_t, g_t, o_r, m_r, g_r


@triton.jit
def _block_inputs(k_ptr, beta_ptr, g_ptr, g_t, m_t, g_r, m_r, o_k, m_k, K: tl.constexpr, USE_G: tl.constexpr):
    """The block's keys [BR, BK] and betas [BR] (fp32) and, with a gate, its tokens' decays exp(log g) [BT]
    (without one, 1.0)."""
    b_K = load_tile(k_ptr, 0, g_r, m_r, K, o_k, m_k)
    b_B = tl.load(beta_ptr + g_r, mask=m_r, other=0.0).to(tl.float32)
    if USE_G:
        b_G = tl.exp(tl.load(g_ptr + g_t, mask=m_t, other=0.0).to(tl.float32))
    else:
        b_G = 1.0
    return b_K, b_B, b_G


@triton.jit
def _decay(b_S, b_G, sel, USE_G: tl.constexpr):
    """A state (or its gradient) times the decay of token ``sel``; as given without a gate."""
    if USE_G:
        b_S = b_S * _pick1(b_G, sel)
    return b_S


@triton.jit
def _write(b_S, b_B, sel, b_k, b_r):
    """S + beta k r^T, the write of sub-step ``sel`` (b_B: the block's betas)."""
    return b_S + (_pick1(b_B, sel) * b_k)[:, None] * b_r[None, :]


@triton.jit
def _state_or_zeros(ptr, p_h, o_k, m_k, o_v, m_v, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                    LOAD: tl.constexpr):  # fmt: skip
    """The program's [BK, BV] state slice of ``ptr`` [NS, H, K, V] at offset p_h, or zeros without LOAD."""
    if LOAD:
        b_S = load_tile(ptr, p_h, o_k, m_k, V, o_v, m_v)
    else:
        b_S = tl.zeros([BK, BV], dtype=tl.float32)
    return b_S


@triton.jit(do_not_specialize=["T"])
def recurrent_fwd_kernel(
    q_ptr, k_ptr, v_ptr, beta_ptr, g_ptr, h0_ptr, cu_ptr, o_ptr, ht_ptr, r_ptr, scale, T, H: tl.constexpr,
    K: tl.constexpr, V: tl.constexpr, NH: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BT: tl.constexpr,
    BR: tl.constexpr, USE_G: tl.constexpr, USE_H0: tl.constexpr, USE_CU: tl.constexpr, STORE_R: tl.constexpr,
):  # fmt: skip
    """Grid (cdiv(V, BV), NS * H). Writes o [rows, H, V], the final state and, with STORE_R, r = v - S^T k
    [rows, n_h, H, V] fp32 (the backward's input). BT tokens per block, BR = pow2 >= BT * n_h sub-step rows."""
    n64, i_h = seq_head(1, H)
    bos, L = _seq_bounds(cu_ptr, n64, T, USE_CU)
    o_k = tl.arange(0, BK)
    o_v = tl.program_id(0) * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    p_h = (n64 * H + i_h) * K * V
    b_S = _state_or_zeros(h0_ptr, p_h, o_k, m_k, o_v, m_v, V, BK, BV, USE_H0)
    t0 = 0
    while t0 < L:
        o_t, m_t, g_t, o_r, m_r, g_r = _block(t0, bos, L, i_h, H, NH, BT, BR)
        b_K, b_B, b_G = _block_inputs(k_ptr, beta_ptr, g_ptr, g_t, m_t, g_r, m_r, o_k, m_k, K, USE_G)
        b_Q = load_tile(q_ptr, 0, g_t, m_t, K, o_k, m_k)
        b_V = load_tile(v_ptr, 0, g_r, m_r, V, o_v, m_v)
        b_O = tl.zeros([BT, BV], dtype=tl.float32)
        b_R = tl.zeros([BR, BV], dtype=tl.float32)
        for i in range(BT):
            b_S = _decay(b_S, b_G, o_t == i, USE_G)
            for j in tl.static_range(NH):
                sel = o_r == i * NH + j
                b_k = _pick(b_K, sel)
                b_r = _pick(b_V, sel) - tl.sum(b_S * b_k[:, None], 0)
                b_R = _put(b_R, sel, b_r)
                b_S = _write(b_S, b_B, sel, b_k, b_r)
            b_q = _pick(b_Q, o_t == i)
            b_O = _put(b_O, o_t == i, scale * tl.sum(b_S * b_q[:, None], 0))
        store_tile(o_ptr, 0, g_t, m_t, V, o_v, m_v, b_O)
        if STORE_R:
            store_tile(r_ptr, 0, g_r, m_r, V, o_v, m_v, b_R)
        t0 += BT
    store_tile(ht_ptr, p_h, o_k, m_k, V, o_v, m_v, b_S)


@triton.jit(do_not_specialize=["T", "ROWS"])
def recurrent_bwd_kernel(
    q_ptr, k_ptr, beta_ptr, g_ptr, h0_ptr, cu_ptr, r_ptr, do_ptr, dht_ptr, dq_ptr, dk_ptr, dv_ptr, db_ptr, dh0_ptr,
    scale, T, ROWS, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, NH: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, BT: tl.constexpr, BR: tl.constexpr, USE_G: tl.constexpr, USE_H0: tl.constexpr,
    USE_CU: tl.constexpr, USE_DHT: tl.constexpr,
):  # fmt: skip
    """Grid (NV = cdiv(V, BV), NS * H). Reverse walk: dv [rows, n_h, H, V] (final), partial dk and dbeta
    [NV, rows, n_h, H(, K)], dh0 [NS, H, K, V]; then a forward walk adds -S_before dv to dk and writes partial
    dq [NV, rows, H, K]. All fp32."""
    i_v = tl.program_id(0)
    n64, i_h = seq_head(1, H)
    bos, L = _seq_bounds(cu_ptr, n64, T, USE_CU)
    part = i_v.to(tl.int64) * ROWS * H  # offset of this V-block's partials in (token, head) pairs; x NH for sub-steps
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    p_h = (n64 * H + i_h) * K * V

    b_dS = _state_or_zeros(dht_ptr, p_h, o_k, m_k, o_v, m_v, V, BK, BV, USE_DHT)
    t0 = ((L - 1) // BT) * BT
    while t0 >= 0:
        o_t, m_t, g_t, o_r, m_r, g_r = _block(t0, bos, L, i_h, H, NH, BT, BR)
        b_K, b_B, b_G = _block_inputs(k_ptr, beta_ptr, g_ptr, g_t, m_t, g_r, m_r, o_k, m_k, K, USE_G)
        b_Q = load_tile(q_ptr, 0, g_t, m_t, K, o_k, m_k)
        b_DO = load_tile(do_ptr, 0, g_t, m_t, V, o_v, m_v)
        b_R = load_tile(r_ptr, 0, g_r, m_r, V, o_v, m_v)
        b_DK = tl.zeros([BR, BK], dtype=tl.float32)
        b_DV = tl.zeros([BR, BV], dtype=tl.float32)
        b_DB = tl.zeros([BR], dtype=tl.float32)
        for ii in range(BT):
            i = BT - 1 - ii
            b_dS = b_dS + (scale * _pick(b_Q, o_t == i))[:, None] * _pick(b_DO, o_t == i)[None, :]
            for jj in tl.static_range(NH):
                sel = o_r == i * NH + (NH - 1 - jj)
                b_k = _pick(b_K, sel)
                b_r = _pick(b_R, sel)
                b_b = _pick1(b_B, sel)
                b_du = tl.sum(b_dS * b_k[:, None], 0)
                b_DK = _put(b_DK, sel, tl.sum(b_dS * (b_b * b_r)[None, :], 1))
                b_DB = tl.where(sel, tl.sum(b_du * b_r, 0), b_DB)
                b_DV = _put(b_DV, sel, b_b * b_du)
                b_dS = b_dS - b_k[:, None] * (b_b * b_du)[None, :]
            b_dS = _decay(b_dS, b_G, o_t == i, USE_G)
        store_tile(dk_ptr, part * NH * K, g_r, m_r, K, o_k, m_k, b_DK)
        tl.store(db_ptr + part * NH + g_r, b_DB, mask=m_r)
        store_tile(dv_ptr, 0, g_r, m_r, V, o_v, m_v, b_DV)
        t0 -= BT
    if USE_H0:
        store_tile(dh0_ptr, p_h, o_k, m_k, V, o_v, m_v, b_dS)

    # the forward walk reads back dv and dk written above by other threads of this program
    tl.debug_barrier()
    b_S = _state_or_zeros(h0_ptr, p_h, o_k, m_k, o_v, m_v, V, BK, BV, USE_H0)
    t0 = 0
    while t0 < L:
        o_t, m_t, g_t, o_r, m_r, g_r = _block(t0, bos, L, i_h, H, NH, BT, BR)
        b_DV = load_tile(dv_ptr, 0, g_r, m_r, V, o_v, m_v)
        b_DK = load_tile(dk_ptr, part * NH * K, g_r, m_r, K, o_k, m_k)
        b_K, b_B, b_G = _block_inputs(k_ptr, beta_ptr, g_ptr, g_t, m_t, g_r, m_r, o_k, m_k, K, USE_G)
        b_DO = load_tile(do_ptr, 0, g_t, m_t, V, o_v, m_v)
        b_R = load_tile(r_ptr, 0, g_r, m_r, V, o_v, m_v)
        b_DQ = tl.zeros([BT, BK], dtype=tl.float32)
        for i in range(BT):
            b_S = _decay(b_S, b_G, o_t == i, USE_G)
            for j in tl.static_range(NH):
                sel = o_r == i * NH + j
                b_DK = _put(b_DK, sel, _pick(b_DK, sel) - tl.sum(b_S * _pick(b_DV, sel)[None, :], 1))
                b_S = _write(b_S, b_B, sel, _pick(b_K, sel), _pick(b_R, sel))
            b_DQ = _put(b_DQ, o_t == i, scale * tl.sum(b_S * _pick(b_DO, o_t == i)[None, :], 1))
        store_tile(dk_ptr, part * NH * K, g_r, m_r, K, o_k, m_k, b_DK)
        store_tile(dq_ptr, part * K, g_t, m_t, K, o_k, m_k, b_DQ)
        t0 += BT
