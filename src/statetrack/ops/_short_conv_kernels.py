"""Triton kernels of the short causal depthwise convolution with SiLU (``short_conv.py``), forward and backward.

This module holds only ``@triton.jit`` code (``ops._triton.kernels_for`` imports it once the device is known to be
able to run it). Layout [B, T, C], channels contiguous; weight [C, W]; cache [B, C, W-1] (the W-1 inputs before
x). One program owns a tile of BT steps x BC channels of one sequence. Arithmetic is in fp32 (fp64 for fp64
tensors); loads and stores in the tensors' dtypes.

Forward: pre_t = bias + sum_k w_k x_{t-W+1+k}; y_t = silu(pre_t). Tap k looks j = W-1-k steps back; it reads the
cache for t - j < 0 and, with packed documents, is zero where the token's position in its document (``pos``) is
below j, so no window crosses a document start.

Backward, from x only (the pre-activation is recomputed, never stored): dp_u = dy_u silu'(pre_u);
dx_t = sum_s w_{W-1-s} dp_{t+s} (the s-th tap of step t+s read x_t); dw_k = sum_t dp_t x_{t-(W-1-k)}; db = sum_t dp_t.
Each program writes its tile's share of dw and db to a partial buffer (summed by the caller), and, when the cache
needs a gradient, the first W-1 rows of dp (the cache's gradient is a W-1-long convolution of them, done by the
caller).
"""

import triton
import triton.language as tl


@triton.jit
def _pre(
    x_ptr, w_ptr, b_ptr, c_ptr, pos_ptr, x_base, c_base, rows, m_rows, o_c, m_c, T, C,
    W: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_CACHE: tl.constexpr,
    VARLEN: tl.constexpr, acc: tl.constexpr,
):  # fmt: skip
    """The pre-activation at steps ``rows`` [BR] (int64) of channels o_c [BC]: [BR, BC] in ``acc``."""
    m2 = m_rows[:, None] & m_c[None, :]
    if VARLEN:
        pos = tl.load(pos_ptr + rows, mask=m_rows, other=0)
    y = tl.zeros([BR, BC], dtype=acc)
    if HAS_BIAS:
        y += tl.load(b_ptr + o_c, mask=m_c, other=0.0).to(acc)[None, :]
    for k in tl.static_range(W):
        j: tl.constexpr = W - 1 - k
        w_k = tl.load(w_ptr + o_c * W + k, mask=m_c, other=0.0).to(acc)
        src = rows - j
        m = m2 & (src >= 0)[:, None]
        if VARLEN:
            m = m & (pos >= j)[:, None]
        xv = tl.load(x_ptr + x_base + src[:, None] * C + o_c[None, :], mask=m, other=0.0).to(acc)
        if HAS_CACHE and j > 0:  # steps before x come from the cache: column W-1+src of [C, W-1]
            mc = m2 & (src < 0)[:, None]
            cv = tl.load(c_ptr + c_base + o_c[None, :] * (W - 1) + (W - 1 + src)[:, None], mask=mc, other=0.0)
            xv += cv.to(acc)
        y += xv * w_k[None, :]
    return y


@triton.jit
def short_conv_fwd_kernel(
    x_ptr, w_ptr, b_ptr, c_ptr, pos_ptr, y_ptr, T, C,
    W: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_CACHE: tl.constexpr,
    VARLEN: tl.constexpr, SILU: tl.constexpr, F64: tl.constexpr,
):  # fmt: skip
    acc: tl.constexpr = tl.float64 if F64 else tl.float32
    i_t, i_c, i_b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    rows = i_t.to(tl.int64) * BT + tl.arange(0, BT)
    o_c = i_c * BC + tl.arange(0, BC)
    m_t, m_c = rows < T, o_c < C
    x_base = i_b * T * C
    c_base = i_b * C * (W - 1)
    y = _pre(x_ptr, w_ptr, b_ptr, c_ptr, pos_ptr, x_base, c_base, rows, m_t, o_c, m_c, T, C,
             W, BT, BC, HAS_BIAS, HAS_CACHE, VARLEN, acc)  # fmt: skip
    if SILU:
        y = y / (1.0 + tl.exp(-y))
    off = x_base + rows[:, None] * C + o_c[None, :]
    tl.store(y_ptr + off, y.to(y_ptr.dtype.element_ty), mask=m_t[:, None] & m_c[None, :])


@triton.jit
def short_conv_bwd_kernel(
    x_ptr, w_ptr, b_ptr, c_ptr, pos_ptr, dy_ptr, dx_ptr, dw_ptr, db_ptr, dhead_ptr, T, C, NT,
    W: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_CACHE: tl.constexpr,
    VARLEN: tl.constexpr, SILU: tl.constexpr, F64: tl.constexpr, NEED_DW: tl.constexpr, NEED_DB: tl.constexpr,
    NEED_DHEAD: tl.constexpr,
):  # fmt: skip
    """dx of this tile; dw_ptr [B * NT, C, W] and db_ptr [B * NT, C] take its shares; dhead_ptr [B, W-1, C] the
    first W-1 rows of dp (tile 0 only)."""
    acc: tl.constexpr = tl.float64 if F64 else tl.float32
    i_t, i_c, i_b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    rows = i_t.to(tl.int64) * BT + tl.arange(0, BT)
    o_c = i_c * BC + tl.arange(0, BC)
    m_t, m_c = rows < T, o_c < C
    x_base = i_b * T * C
    c_base = i_b * C * (W - 1)
    dx = tl.zeros([BT, BC], dtype=acc)
    dp0 = tl.zeros([BT, BC], dtype=acc)
    for s in tl.static_range(W):  # dp at steps u = t + s, whose tap W-1-s reads x_t
        u = rows + s
        m_u = u < T
        m2 = m_u[:, None] & m_c[None, :]
        dp = tl.load(dy_ptr + x_base + u[:, None] * C + o_c[None, :], mask=m2, other=0.0).to(acc)
        if SILU:
            pre = _pre(x_ptr, w_ptr, b_ptr, c_ptr, pos_ptr, x_base, c_base, u, m_u, o_c, m_c, T, C,
                       W, BT, BC, HAS_BIAS, HAS_CACHE, VARLEN, acc)  # fmt: skip
            sg = 1.0 / (1.0 + tl.exp(-pre))
            dp = dp * sg * (1.0 + pre * (1.0 - sg))
        if s == 0:
            dp0 = dp
        if VARLEN and s > 0:  # step u's window reaches back s steps only inside its document
            pos = tl.load(pos_ptr + u, mask=m_u, other=0)
            dp = tl.where((pos >= s)[:, None], dp, 0.0)
        w_s = tl.load(w_ptr + o_c * W + (W - 1 - s), mask=m_c, other=0.0).to(acc)
        dx += dp * w_s[None, :]
    m_tile = m_t[:, None] & m_c[None, :]
    tl.store(dx_ptr + x_base + rows[:, None] * C + o_c[None, :], dx.to(dx_ptr.dtype.element_ty), mask=m_tile)
    part = i_b * NT + i_t
    if NEED_DW:
        if VARLEN:
            pos_t = tl.load(pos_ptr + rows, mask=m_t, other=0)
        for k in tl.static_range(W):
            j: tl.constexpr = W - 1 - k
            src = rows - j
            m = m_tile & (src >= 0)[:, None]
            if VARLEN:
                m = m & (pos_t >= j)[:, None]
            xv = tl.load(x_ptr + x_base + src[:, None] * C + o_c[None, :], mask=m, other=0.0).to(acc)
            if HAS_CACHE and j > 0:
                mc = m_tile & (src < 0)[:, None]
                cv = tl.load(c_ptr + c_base + o_c[None, :] * (W - 1) + (W - 1 + src)[:, None], mask=mc, other=0.0)
                xv += cv.to(acc)
            tl.store(dw_ptr + (part * C + o_c) * W + k, tl.sum(dp0 * xv, 0), mask=m_c)
    if NEED_DB:
        tl.store(db_ptr + part * C + o_c, tl.sum(dp0, 0), mask=m_c)
    if NEED_DHEAD:
        if i_t == 0:
            m_h = m_tile & (rows < W - 1)[:, None]
            tl.store(dhead_ptr + i_b * (W - 1) * C + rows[:, None] * C + o_c[None, :], dp0, mask=m_h)
