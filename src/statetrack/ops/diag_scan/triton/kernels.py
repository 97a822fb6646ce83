"""Triton kernels of the signed diagonal scan (forward and backward).

This module holds only ``@triton.jit`` code (``ops._triton.kernels_for`` imports it once the device is known to be
able to run it). Math and launch layout: ``diag.py``.

One program owns one block of channels of one sequence and walks time in tiles of BT steps: forward from the first
tile, backward from the last. Inside a tile the recurrence h_t = a_t h_{t-1} + b_t is an associative scan along time
over the affine maps (a_t, b_t), in two levels: inside segments of R steps and over the segments (see
:func:`diag_fwd_kernel`); the state entering the tile is applied afterwards: h_t = B_t + A_t s with (A_t, B_t) the
composed map of the tile's steps 0..t. Decays are only multiplied, never divided or logged, so a = 0 and a = -1 are
exact. Masked rows (past T) and lanes load a = 1, b = 0: the identity map, so they carry the state through unchanged
and need no special case.

The backward needs, per step, the state *before* the step (h_{t-1}, for da) and the adjoint *after* it
(a_{t+1} G_{t+1}): it loads tiles of a, b one step early or late for them (those bytes come from L2).

Names: b_* register tiles are avoided in favour of plain math letters; o_* index vectors, m_* masks, *_ptr pointers.
Loops over tiles use ``tl.range`` with a bound that is a compile-time constant under the interpreter only
(see ``ops._triton.loop_bound``); 64-bit offsets come from the (int64) sequence index, so T * D may exceed 2^31.
"""

import triton
import triton.language as tl

from ..._scan_kernels import affine, affine_excl, program_block


@triton.jit
def diag_fwd_kernel(
    a_ptr,
    b_ptr,
    h0_ptr,
    h_ptr,
    ht_ptr,
    ck_ptr,
    T,
    D,
    NT,
    R: tl.constexpr,
    S: tl.constexpr,
    BD: tl.constexpr,
    NT_I: tl.constexpr,
    STAGES: tl.constexpr,
    USE_H0: tl.constexpr,
    STORE_CK: tl.constexpr,
):
    """Grid (cdiv(D, BD) * B,). a, b, h [B, T, D]; h0, ht [B, D] fp32; ck [B, NT, D] fp32 (state entering each tile).

    A tile of BT = S * R steps is held as [S, R, BD]: S segments of R consecutive steps. Triton's coalescing keeps the
    R axis of a thread's segment in its registers (axis 1, the stride-R*D axis 0 goes to threads and warps), so the
    scan inside segments is sequential register math, and only the S segment totals are scanned across threads:
    on sm_90 this takes ~2.5x fewer instructions per element than one scan over a [BT, BD] tile."""
    BT: tl.constexpr = S * R
    i_b, i_d = program_block(D, BD)
    o_r = tl.arange(0, R)
    o_q = tl.arange(0, S)
    o_d = i_d * BD + tl.arange(0, BD)
    m_d = o_d < D
    tt = o_q[:, None, None] * R + o_r[None, :, None]  # step within the tile
    off = tt * D + o_d[None, None, :]
    seg_end = o_r[None, :, None] == R - 1
    last_seg = o_q[:, None] == S - 1
    one = tl.full([S, BD], 1.0, tl.float32)
    zero = tl.zeros([S, BD], dtype=tl.float32)
    if USE_H0:
        s = tl.load(h0_ptr + i_b * D + o_d, mask=m_d, other=0.0).to(tl.float32)
    else:
        s = tl.zeros([BD], dtype=tl.float32)
    for k in tl.range(0, NT_I if NT_I > 0 else NT, num_stages=STAGES):
        blk = (i_b * T + k * BT) * D
        m = ((k * BT + tt) < T) & m_d[None, None, :]
        a = tl.load(a_ptr + blk + off, mask=m, other=1.0).to(tl.float32)
        b = tl.load(b_ptr + blk + off, mask=m, other=0.0).to(tl.float32)
        if STORE_CK:
            tl.store(ck_ptr + (i_b * NT + k) * D + o_d, s, mask=m_d)
        a_c, b_c = tl.associative_scan((a, b), 1, affine)  # inside segments
        a_s = tl.sum(tl.where(seg_end, a_c, 0.0), 1)  # segment totals [S, BD]
        b_s = tl.sum(tl.where(seg_end, b_c, 0.0), 1)
        _, _, p, q = tl.associative_scan((a_s, b_s, one, zero), 0, affine_excl)
        enter = q + p * s[None, :]  # state entering each segment
        h = b_c + a_c * enter[:, None, :]
        tl.store(h_ptr + blk + off, h.to(h_ptr.dtype.element_ty), mask=m)
        s = tl.sum(tl.where(last_seg, b_s + a_s * enter, 0.0), 0)
    tl.store(ht_ptr + i_b * D + o_d, s, mask=m_d)


@triton.jit
def diag_bwd_kernel(
    a_ptr,
    b_ptr,
    ck_ptr,
    g_ptr,
    gt_ptr,
    da_ptr,
    db_ptr,
    dh0_ptr,
    T,
    D,
    NT,
    R: tl.constexpr,
    S: tl.constexpr,
    BD: tl.constexpr,
    NT_I: tl.constexpr,
    STAGES: tl.constexpr,
    USE_GT: tl.constexpr,
    NEED_DA: tl.constexpr,
    NEED_DB: tl.constexpr,
):
    """Grid (cdiv(D, BD) * B,). g = dL/dh [B, T, D]; gt = dL/d(final state) [B, D] fp32; ck from the forward.

    G_t = dL/dh_t in full: G_t = g_t + a_{t+1} G_{t+1} (G_T = gt, a_T = 1), db_t = G_t, da_t = G_t h_{t-1},
    dh0 = a_0 G_0. Tiles are walked from the last, as [S, R, BD] segments like the forward's but in *descending* time
    (element (q, r) is step BT - 1 - (q R + r)), so G is a forward scan over (a_{t+1}, g_t) (a tile of a loaded one
    step later): in segments, then over segment totals. The states h_{t-1} are recomputed from the tile's checkpoint
    by reverse scans over (a_{t-1}, b_{t-1}), the step before the tile masked to the identity. Reverse scans across
    threads cost ~1.5x forward ones on sm_90; this way the only one is over the S segment totals, and the shifted
    tile loads hit L2."""
    BT: tl.constexpr = S * R
    i_b, i_d = program_block(D, BD)
    o_r = tl.arange(0, R)
    o_q = tl.arange(0, S)
    o_d = i_d * BD + tl.arange(0, BD)
    m_d = o_d < D
    rt = BT - 1 - (o_q[:, None, None] * R + o_r[None, :, None])  # step within the tile, descending
    off = rt * D + o_d[None, None, :]
    seg_latest = o_r[None, :, None] == 0
    seg_earliest = o_r[None, :, None] == R - 1
    earliest_seg = o_q[:, None] == S - 1
    one = tl.full([S, BD], 1.0, tl.float32)
    zero = tl.zeros([S, BD], dtype=tl.float32)
    if USE_GT:
        G = tl.load(gt_ptr + i_b * D + o_d, mask=m_d, other=0.0).to(tl.float32)
    else:
        G = tl.zeros([BD], dtype=tl.float32)
    for kk in tl.range(0, NT_I if NT_I > 0 else NT, num_stages=STAGES):
        k = NT - 1 - kk
        t = k * BT + rt
        blk = (i_b * T + k * BT) * D
        m = (t < T) & m_d[None, None, :]
        a_next = tl.load(a_ptr + blk + D + off, mask=(t + 1 < T) & m_d[None, None, :], other=1.0).to(tl.float32)
        g = tl.load(g_ptr + blk + off, mask=m, other=0.0).to(tl.float32)
        p, l = tl.associative_scan((a_next, g), 1, affine)
        p_s = tl.sum(tl.where(seg_earliest, p, 0.0), 1)
        l_s = tl.sum(tl.where(seg_earliest, l, 0.0), 1)
        _, _, pp, qq = tl.associative_scan((p_s, l_s, one, zero), 0, affine_excl)
        g_in = qq + pp * G[None, :]  # G just after each segment's latest step
        gg = l + p * g_in[:, None, :]
        if NEED_DB:
            tl.store(db_ptr + blk + off, gg.to(db_ptr.dtype.element_ty), mask=m)
        if NEED_DA:
            m_prev = (rt > 0) & (t <= T) & m_d[None, None, :]
            a_prev = tl.load(a_ptr + blk - D + off, mask=m_prev, other=1.0).to(tl.float32)
            b_prev = tl.load(b_ptr + blk - D + off, mask=m_prev, other=0.0).to(tl.float32)
            s = tl.load(ck_ptr + (i_b * NT + k) * D + o_d, mask=m_d, other=0.0)
            pa, pb = tl.associative_scan((a_prev, b_prev), 1, affine, reverse=True)
            pa_s = tl.sum(tl.where(seg_latest, pa, 0.0), 1)
            pb_s = tl.sum(tl.where(seg_latest, pb, 0.0), 1)
            _, _, pp2, qq2 = tl.associative_scan((pa_s, pb_s, one, zero), 0, affine_excl, reverse=True)
            enter = qq2 + pp2 * s[None, :]  # state entering each segment (at its earliest step)
            h_prev = pb + pa * enter[:, None, :]
            tl.store(da_ptr + blk + off, (gg * h_prev).to(da_ptr.dtype.element_ty), mask=m)
        G = tl.sum(tl.where(earliest_seg, l_s + p_s * g_in, 0.0), 0)
    a0 = tl.load(a_ptr + i_b * T * D + o_d, mask=m_d, other=0.0).to(tl.float32)
    tl.store(dh0_ptr + i_b * D + o_d, a0 * G, mask=m_d)
