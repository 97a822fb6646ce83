"""Triton kernels of the short causal depthwise convolution with SiLU (``short_conv.py``), forward and backward.

This module holds only ``@triton.jit`` code (``ops._triton.kernels_for`` imports it once the device is known to be
able to run it). Layout [B, T, C], channels contiguous; weight [C, W]; cache [B, C, W-1] (the W-1 inputs before
x). One program owns a tile of BT steps x BC channels of one sequence. Arithmetic is in fp32 (fp64 for fp64
tensors); loads and stores in the tensors' dtypes.

Forward: pre_t = bias + sum_k w_k x_{t-W+1+k}; y_t = silu(pre_t). Tap k looks j = W-1-k steps back; it reads the
cache for t - j < 0 and, with packed documents, is zero where the token's position in its document (``pos``) is
below j, so no window crosses a document start.

Backward, from x only (the pre-activation is recomputed, never stored), in two kernels so that nothing is computed
twice: ``short_conv_dpre_kernel`` forms dp_u = dy_u silu'(pre_u) once per step (written to a buffer in dy's dtype
for 16-bit dy, else fp32, fp64 for fp64 tensors) with dw_k = sum_t dp_t x_{t-(W-1-k)} and db = sum_t dp_t (each
program's share to a partial buffer, summed by the caller); ``short_conv_dx_kernel`` then reads dp at W shifts:
dx_t = sum_s w_{W-1-s} dp_{t+s} (the s-th tap of step t+s read x_t). The cache's gradient is a W-1-long
convolution of dp's first W-1 rows (done by the caller).
"""

import triton
import triton.language as tl


@triton.jit
def _tap(xt_ptr, c_ptr, rows, loc, pos, m2, o_c, C, W: tl.constexpr, k: tl.constexpr, HAS_CACHE: tl.constexpr,
         VARLEN: tl.constexpr, acc: tl.constexpr):  # fmt: skip
    """What tap k (W - 1 - k steps back) reads at steps ``rows`` = t0 + loc of channels o_c: [BR, BC] in ``acc``;
    from the cache before the sequence's first step, zero before it without one and, with packed documents
    (``pos``: each row's position in its document), before the document's start. m2 [BR, BC]: the tile's mask."""
    m = m2 & (rows >= W - 1 - k)[:, None]
    if VARLEN:
        m = m & (pos >= W - 1 - k)[:, None]
    xv = tl.load(xt_ptr + (loc - (W - 1 - k))[:, None] * C + o_c[None, :], mask=m, other=0.0).to(acc)
    if HAS_CACHE and k < W - 1:  # steps before x come from the cache: column W-1+src of [C, W-1]
        src = rows - (W - 1 - k)
        mc = m2 & (src < 0)[:, None]
        cv = tl.load(c_ptr + o_c[None, :] * (W - 1) + (W - 1 + src)[:, None], mask=mc, other=0.0)
        xv += cv.to(acc)
    return xv


@triton.jit
def _pre(
    xt_ptr, w_ptr, b_ptr, c_ptr, pos, t0, loc, m_rows, o_c, m_c, C,
    W: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_CACHE: tl.constexpr,
    VARLEN: tl.constexpr, acc: tl.constexpr,
):  # fmt: skip
    """The pre-activation at steps t0 + loc (loc [BR] int32, relative to the tile's first step t0) of channels
    o_c [BC]: [BR, BC] in ``acc``. ``xt_ptr`` points at step t0 of this sequence and ``c_ptr`` at its cache, so
    that offsets stay 32-bit and small (64-bit offsets per element cost registers); ``pos`` as in :func:`_tap`."""
    rows = t0 + loc
    m2 = m_rows[:, None] & m_c[None, :]
    y = tl.zeros([BR, BC], dtype=acc)
    if HAS_BIAS:
        y += tl.load(b_ptr + o_c, mask=m_c, other=0.0).to(acc)[None, :]
    for k in tl.static_range(W):
        w_k = tl.load(w_ptr + o_c * W + k, mask=m_c, other=0.0).to(acc)
        y += _tap(xt_ptr, c_ptr, rows, loc, pos, m2, o_c, C, W, k, HAS_CACHE, VARLEN, acc) * w_k[None, :]
    return y


@triton.jit
def _positions(pos_ptr, rows, m_rows, VARLEN: tl.constexpr):
    """Each row's position in its document with packed documents; else ``rows`` (unread)."""
    if VARLEN:
        return tl.load(pos_ptr + rows, mask=m_rows, other=0)
    return rows


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
    pos = _positions(pos_ptr, t0 + o_r, m_t, VARLEN)
    y = _pre(x_ptr + x_off, w_ptr, b_ptr, c_ptr + c_off, pos, t0, o_r, m_t, o_c, m_c, C,
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
def short_conv_dpre_kernel(
    x_ptr, w_ptr, b_ptr, c_ptr, pos_ptr, dy_ptr, dp_ptr, dw_ptr, db_ptr, T, C,
    W: tl.constexpr, WP: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, HAS_BIAS: tl.constexpr,
    HAS_CACHE: tl.constexpr, VARLEN: tl.constexpr, SILU: tl.constexpr, F64: tl.constexpr, NEED_DW: tl.constexpr,
    NEED_DB: tl.constexpr,
):  # fmt: skip
    """dp_ptr [B, T, C] (fp32, fp64 with F64, or dy's 16-bit dtype) of one tile; dw_ptr [B * NT, C, W] and
    db_ptr [B * NT, C] take the tile's shares (NT time tiles per sequence), summed in the accumulator dtype before
    dp is stored. The W shifted inputs are read for the pre-activation and again for dw (the same addresses: an
    sm_90 compile does not reuse the first loads)."""
    acc: tl.constexpr = tl.float64 if F64 else tl.float32
    i_t, i_b, t0, o_r, o_c, m_t, m_c, x_off, c_off = _tile(T, C, W, BT, BC)
    rows = t0 + o_r
    m_tile = m_t[:, None] & m_c[None, :]
    off = o_r[:, None] * C + o_c[None, :]
    pos = _positions(pos_ptr, rows, m_t, VARLEN)
    dp = tl.load(dy_ptr + x_off + off, mask=m_tile, other=0.0).to(acc)
    if SILU:
        pre = _pre(x_ptr + x_off, w_ptr, b_ptr, c_ptr + c_off, pos, t0, o_r, m_t, o_c, m_c, C,
                   W, BT, BC, HAS_BIAS, HAS_CACHE, VARLEN, acc)  # fmt: skip
        sg = 1.0 / (1.0 + tl.exp(-pre))
        dp = dp * sg * (1.0 + pre * (1.0 - sg))
    tl.store(dp_ptr + x_off + off, dp.to(dp_ptr.dtype.element_ty), mask=m_tile)
    part = i_b * tl.num_programs(0) + i_t
    if NEED_DW:
        o_w = tl.arange(0, WP)
        dw = tl.zeros([WP, BC], dtype=acc)  # channels along the fast axis, as in the tiles
        for k in tl.static_range(W):
            xv = _tap(x_ptr + x_off, c_ptr + c_off, rows, o_r, pos, m_tile, o_c, C, W, k, HAS_CACHE, VARLEN, acc)
            dw += tl.where(o_w[:, None] == k, tl.sum(dp * xv, 0)[None, :], 0.0)
        m_w = m_c[None, :] & (o_w < W)[:, None]
        tl.store(dw_ptr + (part * C + o_c)[None, :] * W + o_w[:, None], dw, mask=m_w)
    if NEED_DB:
        tl.store(db_ptr + part * C + o_c, tl.sum(dp, 0), mask=m_c)


@triton.jit
def short_conv_dx_kernel(
    dp_ptr, w_ptr, pos_ptr, dx_ptr, T, C,
    W: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, VARLEN: tl.constexpr, F64: tl.constexpr,
):  # fmt: skip
    """dx [B, T, C] of one tile from dp [B, T, C]: step u = t + s's tap W-1-s read x_t, inside u's document."""
    acc: tl.constexpr = tl.float64 if F64 else tl.float32
    _, _, t0, o_r, o_c, m_t, m_c, x_off, _ = _tile(T, C, W, BT, BC)
    dx = tl.zeros([BT, BC], dtype=acc)
    for s in tl.static_range(W):
        loc = o_r + s
        m_u = t0 + loc < T
        m = m_u[:, None] & m_c[None, :]
        if VARLEN and s > 0:  # step u's window reaches back s steps only inside its document
            pos = tl.load(pos_ptr + t0 + loc, mask=m_u, other=0)
            m = m & (pos >= s)[:, None]
        dp = tl.load(dp_ptr + x_off + loc[:, None] * C + o_c[None, :], mask=m, other=0.0).to(acc)
        w_s = tl.load(w_ptr + o_c * W + (W - 1 - s), mask=m_c, other=0.0).to(acc)
        dx += dp * w_s[None, :]
    tl.store(dx_ptr + x_off + o_r[:, None] * C + o_c[None, :], dx.to(dx_ptr.dtype.element_ty),
             mask=m_t[:, None] & m_c[None, :])  # fmt: skip
