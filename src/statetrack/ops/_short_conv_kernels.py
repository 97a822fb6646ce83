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
    xt_ptr, w_ptr, b_ptr, c_ptr, pos_ptr, t0, loc, m_rows, o_c, m_c, C,
    W: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_CACHE: tl.constexpr,
    VARLEN: tl.constexpr, acc: tl.constexpr,
):  # fmt: skip
    """The pre-activation at steps t0 + loc (loc [BR] int32, relative to the tile's first step t0) of channels
    o_c [BC]: [BR, BC] in ``acc``. ``xt_ptr`` points at step t0 of this sequence and ``c_ptr`` at its cache, so
    that offsets stay 32-bit and small (64-bit offsets per element cost registers)."""
    rows = t0 + loc
    m2 = m_rows[:, None] & m_c[None, :]
    if VARLEN:
        pos = tl.load(pos_ptr + rows, mask=m_rows, other=0)
    y = tl.zeros([BR, BC], dtype=acc)
    if HAS_BIAS:
        y += tl.load(b_ptr + o_c, mask=m_c, other=0.0).to(acc)[None, :]
    for k in tl.static_range(W):  # tap k looks W - 1 - k steps back (no named constexpr: the body is re-visited)
        w_k = tl.load(w_ptr + o_c * W + k, mask=m_c, other=0.0).to(acc)
        m = m2 & (rows >= W - 1 - k)[:, None]
        if VARLEN:
            m = m & (pos >= W - 1 - k)[:, None]
        xv = tl.load(xt_ptr + (loc - (W - 1 - k))[:, None] * C + o_c[None, :], mask=m, other=0.0).to(acc)
        if HAS_CACHE and k < W - 1:  # steps before x come from the cache: column W-1+src of [C, W-1]
            src = rows - (W - 1 - k)
            mc = m2 & (src < 0)[:, None]
            cv = tl.load(c_ptr + o_c[None, :] * (W - 1) + (W - 1 + src)[:, None], mask=mc, other=0.0)
            xv += cv.to(acc)
        y += xv * w_k[None, :]
    return y


@triton.jit
def _tile(T, C, W: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr):
    """This program's tile: first step t0, local steps o_r [BT], channels o_c [BC] and masks; the 64-bit element
    offsets of step t0 of its sequence (in x) and of its cache."""
    i_t, i_c, i_b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    t0 = i_t * BT
    o_r = tl.arange(0, BT)
    o_c = i_c * BC + tl.arange(0, BC)
    return i_t, i_b, t0, o_r, o_c, t0 + o_r < T, o_c < C, (i_b * T + t0) * C, i_b * C * (W - 1)


@triton.jit
def short_conv_fwd_kernel(
    x_ptr, w_ptr, b_ptr, c_ptr, pos_ptr, y_ptr, nc_ptr, T, C,
    W: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_CACHE: tl.constexpr,
    VARLEN: tl.constexpr, SILU: tl.constexpr, F64: tl.constexpr, NEW_CACHE: tl.constexpr, IN_PLACE: tl.constexpr,
):  # fmt: skip
    """y of one tile; with NEW_CACHE (no packed documents) the programs of the first time tile also write the new
    cache nc_ptr [B, C, W-1]: column j is step T - (W - 1) + j of (cache, x), from the cache where that is < 0
    (a decoding step then needs no torch ops around the kernel). IN_PLACE: nc_ptr is c_ptr (one time tile)."""
    acc: tl.constexpr = tl.float64 if F64 else tl.float32
    i_t, i_b, t0, o_r, o_c, m_t, m_c, x_off, c_off = _tile(T, C, W, BT, BC)
    y = _pre(x_ptr + x_off, w_ptr, b_ptr, c_ptr + c_off, pos_ptr, t0, o_r, m_t, o_c, m_c, C,
             W, BT, BC, HAS_BIAS, HAS_CACHE, VARLEN, acc)  # fmt: skip
    if SILU:
        y = y / (1.0 + tl.exp(-y))
    off = o_r[:, None] * C + o_c[None, :]
    tl.store(y_ptr + x_off + off, y.to(y_ptr.dtype.element_ty), mask=m_t[:, None] & m_c[None, :])
    if NEW_CACHE and i_t == 0:
        if IN_PLACE:  # nc_ptr is c_ptr: every thread's reads of the cache above come before any write
            tl.debug_barrier()
        for j in tl.static_range(W - 1):
            src = T - (W - 1) + j
            val = tl.zeros([BC], dtype=acc)  # one type on both sides of the run-time branch
            if src >= 0:
                val = tl.load(x_ptr + (i_b * T + src) * C + o_c, mask=m_c, other=0.0).to(acc)
            elif HAS_CACHE:
                val = tl.load(c_ptr + c_off + o_c * (W - 1) + (W - 1 + src), mask=m_c, other=0.0).to(acc)
            if IN_PLACE:  # column j + 1, read above, is written only in the next round
                tl.debug_barrier()
            tl.store(nc_ptr + c_off + o_c * (W - 1) + j, val.to(nc_ptr.dtype.element_ty), mask=m_c)


@triton.jit
def short_conv_bwd_kernel(
    x_ptr, w_ptr, b_ptr, c_ptr, pos_ptr, dy_ptr, dx_ptr, dw_ptr, db_ptr, dhead_ptr, T, C, NP,
    W: tl.constexpr, WP: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, TILES: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_CACHE: tl.constexpr, VARLEN: tl.constexpr, SILU: tl.constexpr, F64: tl.constexpr,
    NEED_DW: tl.constexpr, NEED_DB: tl.constexpr, NEED_DHEAD: tl.constexpr,
):  # fmt: skip
    """dx of TILES consecutive tiles of BT steps (small tiles keep the W recomputed pre-activations in registers;
    several per program keep the partial sums few); dw_ptr [B * NP, C, W] and db_ptr [B * NP, C] take this
    program's shares (NP programs per sequence), dhead_ptr [B, W-1, C] the first W-1 rows of dp."""
    acc: tl.constexpr = tl.float64 if F64 else tl.float32
    i_p, i_c, i_b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    o_r = tl.arange(0, BT)
    o_c = i_c * BC + tl.arange(0, BC)
    o_w = tl.arange(0, WP)
    m_c = o_c < C
    ct_ptr = c_ptr + i_b * C * (W - 1)
    dw = tl.zeros([BC, WP], dtype=acc)
    db = tl.zeros([BC], dtype=acc)
    for it in range(TILES):
        t0 = (i_p * TILES + it) * BT
        x_off = (i_b * T + t0) * C
        xt_ptr = x_ptr + x_off
        m_t = t0 + o_r < T
        dx = tl.zeros([BT, BC], dtype=acc)
        dp0 = tl.zeros([BT, BC], dtype=acc)
        for s in tl.static_range(W):  # dp at steps u = t + s, whose tap W-1-s reads x_t
            loc = o_r + s
            m_u = t0 + loc < T
            dp = tl.load(dy_ptr + x_off + loc[:, None] * C + o_c[None, :], mask=m_u[:, None] & m_c[None, :], other=0.0)
            dp = dp.to(acc)
            if SILU:
                pre = _pre(xt_ptr, w_ptr, b_ptr, ct_ptr, pos_ptr, t0, loc, m_u, o_c, m_c, C,
                           W, BT, BC, HAS_BIAS, HAS_CACHE, VARLEN, acc)  # fmt: skip
                sg = 1.0 / (1.0 + tl.exp(-pre))
                dp = dp * sg * (1.0 + pre * (1.0 - sg))
            if s == 0:
                dp0 = dp
            if VARLEN and s > 0:  # step u's window reaches back s steps only inside its document
                pos = tl.load(pos_ptr + t0 + loc, mask=m_u, other=0)
                dp = tl.where((pos >= s)[:, None], dp, 0.0)
            w_s = tl.load(w_ptr + o_c * W + (W - 1 - s), mask=m_c, other=0.0).to(acc)
            dx += dp * w_s[None, :]
        m_tile = m_t[:, None] & m_c[None, :]
        tl.store(dx_ptr + x_off + o_r[:, None] * C + o_c[None, :], dx.to(dx_ptr.dtype.element_ty), mask=m_tile)
        if NEED_DW:
            rows = t0 + o_r
            if VARLEN:
                pos_t = tl.load(pos_ptr + rows, mask=m_t, other=0)
            for k in tl.static_range(W):
                m = m_tile & (rows >= W - 1 - k)[:, None]
                if VARLEN:
                    m = m & (pos_t >= W - 1 - k)[:, None]
                xv = tl.load(xt_ptr + (o_r - (W - 1 - k))[:, None] * C + o_c[None, :], mask=m, other=0.0).to(acc)
                if HAS_CACHE and k < W - 1:
                    src = rows - (W - 1 - k)
                    mc = m_tile & (src < 0)[:, None]
                    cv = tl.load(ct_ptr + o_c[None, :] * (W - 1) + (W - 1 + src)[:, None], mask=mc, other=0.0)
                    xv += cv.to(acc)
                dw += tl.where(o_w[None, :] == k, tl.sum(dp0 * xv, 0)[:, None], 0.0)
        if NEED_DB:
            db += tl.sum(dp0, 0)
        if NEED_DHEAD:
            if t0 == 0:
                m_h = m_tile & (o_r < W - 1)[:, None]
                tl.store(dhead_ptr + i_b * (W - 1) * C + o_r[:, None] * C + o_c[None, :], dp0, mask=m_h)
    part = i_b * NP + i_p
    if NEED_DW:
        m_w = m_c[:, None] & (o_w < W)[None, :]
        tl.store(dw_ptr + (part * C + o_c)[:, None] * W + o_w[None, :], dw, mask=m_w)
    if NEED_DB:
        tl.store(db_ptr + part * C + o_c, db, mask=m_c)
