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
def _tile_layout(s_ptr, D, R: tl.constexpr, S: tl.constexpr, BD: tl.constexpr, USE_S: tl.constexpr):
    """This program's sequence i_b (int64); a tile's steps as segment o_q [S] and step o_r [R]; the masks of each
    segment's last step [1, R, 1] and of the last segment [S, 1], in the tile's layout order; its channels o_d [BD]
    and their mask m_d; the identity map (one, zero) [S, BD] that enters the scans over segments; and the fp32
    state [BD] the walk starts from, read at ``s_ptr`` [B, D] (zeros without USE_S)."""
    i_b, i_d = program_block(D, BD)
    o_q = tl.arange(0, S)
    o_r = tl.arange(0, R)
    o_d = i_d * BD + tl.arange(0, BD)
    m_d = o_d < D
    one = tl.full([S, BD], 1.0, tl.float32)
    zero = tl.zeros([S, BD], dtype=tl.float32)
    if USE_S:
        s = tl.load(s_ptr + i_b * D + o_d, mask=m_d, other=0.0).to(tl.float32)
    else:
        s = tl.zeros([BD], dtype=tl.float32)
    return i_b, o_q, o_r, o_r[None, :, None] == R - 1, o_q[:, None] == S - 1, o_d, m_d, one, zero, s


@triton.jit
def _segmented_scan(a, b, s, one, zero, seg_total, last_seg, REVERSE: tl.constexpr):
    """The affine scan h = b + a h_prev of a tile held as [S, R, BD] (S segments of R steps), entered with the state
    s [BD]: inside segments in registers, then across the S segment totals (``one``, ``zero``: [S, BD]). Masks:
    ``seg_total`` [1, R, 1] picks a segment's last step in scan order, ``last_seg`` [S, 1] the last segment.
    With REVERSE the scans run from the highest index down. Returns (h [S, R, BD], the state leaving the tile)."""
    a_c, b_c = tl.associative_scan((a, b), 1, affine, reverse=REVERSE)  # inside segments
    a_s = tl.sum(tl.where(seg_total, a_c, 0.0), 1)  # segment totals [S, BD]
    b_s = tl.sum(tl.where(seg_total, b_c, 0.0), 1)
    _, _, p, q = tl.associative_scan((a_s, b_s, one, zero), 0, affine_excl, reverse=REVERSE)
    enter = q + p * s[None, :]  # state entering each segment
    return b_c + a_c * enter[:, None, :], tl.sum(tl.where(last_seg, b_s + a_s * enter, 0.0), 0)


@triton.jit
def diag_fwd_kernel(
    a_ptr, b_ptr, h0_ptr, h_ptr, ht_ptr, ck_ptr,
    T, D, NT,
    R: tl.constexpr, S: tl.constexpr, BD: tl.constexpr, NT_I: tl.constexpr, STAGES: tl.constexpr,
    USE_H0: tl.constexpr, STORE_CK: tl.constexpr,
):  # fmt: skip
    """Grid (cdiv(D, BD) * B,). a, b, h [B, T, D]; h0, ht [B, D] fp32; ck [B, NT, D] fp32 (state entering each tile).

    A tile of BT = S * R steps is held as [S, R, BD]: S segments of R consecutive steps. Triton's coalescing keeps the
    R axis of a thread's segment in its registers (axis 1, the stride-R*D axis 0 goes to threads and warps), so the
    scan inside segments is sequential register math, and only the S segment totals are scanned across threads:
    on sm_90 this takes ~2.5x fewer instructions per element than one scan over a [BT, BD] tile."""
    BT: tl.constexpr = S * R
    i_b, o_q, o_r, seg_end, last_seg, o_d, m_d, one, zero, s = _tile_layout(h0_ptr, D, R, S, BD, USE_H0)
    tt = o_q[:, None, None] * R + o_r[None, :, None]  # step within the tile
    off = tt * D + o_d[None, None, :]
    for k in tl.range(0, NT_I if NT_I > 0 else NT, num_stages=STAGES):
        blk = (i_b * T + k * BT) * D
        m = ((k * BT + tt) < T) & m_d[None, None, :]
        a = tl.load(a_ptr + blk + off, mask=m, other=1.0).to(tl.float32)
        b = tl.load(b_ptr + blk + off, mask=m, other=0.0).to(tl.float32)
        if STORE_CK:
            tl.store(ck_ptr + (i_b * NT + k) * D + o_d, s, mask=m_d)
        h, s = _segmented_scan(a, b, s, one, zero, seg_end, last_seg, False)
        tl.store(h_ptr + blk + off, h.to(h_ptr.dtype.element_ty), mask=m)
    tl.store(ht_ptr + i_b * D + o_d, s, mask=m_d)


@triton.jit
def diag_bwd_kernel(
    a_ptr, b_ptr, ck_ptr, g_ptr, gt_ptr, da_ptr, db_ptr, dh0_ptr,
    T, D, NT,
    R: tl.constexpr, S: tl.constexpr, BD: tl.constexpr, NT_I: tl.constexpr, STAGES: tl.constexpr,
    USE_GT: tl.constexpr, NEED_DA: tl.constexpr, NEED_DB: tl.constexpr,
):  # fmt: skip
    """Grid (cdiv(D, BD) * B,). g = dL/dh [B, T, D]; gt = dL/d(final state) [B, D] fp32; ck from the forward.

    G_t = dL/dh_t in full: G_t = g_t + a_{t+1} G_{t+1} (G_T = gt, a_T = 1), db_t = G_t, da_t = G_t h_{t-1},
    dh0 = a_0 G_0. Tiles are walked from the last, as [S, R, BD] segments like the forward's but in *descending* time
    (element (q, r) is step BT - 1 - (q R + r)), so G is a forward scan over (a_{t+1}, g_t) (a tile of a loaded one
    step later): in segments, then over segment totals. The states h_{t-1} are recomputed from the tile's checkpoint
    by reverse scans over (a_{t-1}, b_{t-1}), the step before the tile masked to the identity. Reverse scans across
    threads cost ~1.5x forward ones on sm_90; this way the only one is over the S segment totals, and the shifted
    tile loads hit L2."""
    BT: tl.constexpr = S * R
    # the layout's last step of a segment (last segment) is the earliest in time: the tile runs backwards
    i_b, o_q, o_r, seg_earliest, earliest_seg, o_d, m_d, one, zero, G = _tile_layout(gt_ptr, D, R, S, BD, USE_GT)
    rt = BT - 1 - (o_q[:, None, None] * R + o_r[None, :, None])  # step within the tile, descending
    off = rt * D + o_d[None, None, :]
    seg_latest = o_r[None, :, None] == 0
    for kk in tl.range(0, NT_I if NT_I > 0 else NT, num_stages=STAGES):
        k = NT - 1 - kk
        t = k * BT + rt
        blk = (i_b * T + k * BT) * D
        m = (t < T) & m_d[None, None, :]
        a_next = tl.load(a_ptr + blk + D + off, mask=(t + 1 < T) & m_d[None, None, :], other=1.0).to(tl.float32)
        g = tl.load(g_ptr + blk + off, mask=m, other=0.0).to(tl.float32)
        gg, G = _segmented_scan(a_next, g, G, one, zero, seg_earliest, earliest_seg, False)
        if NEED_DB:
            tl.store(db_ptr + blk + off, gg.to(db_ptr.dtype.element_ty), mask=m)
        if NEED_DA:
            m_prev = (rt > 0) & (t <= T) & m_d[None, None, :]
            a_prev = tl.load(a_ptr + blk - D + off, mask=m_prev, other=1.0).to(tl.float32)
            b_prev = tl.load(b_ptr + blk - D + off, mask=m_prev, other=0.0).to(tl.float32)
            s = tl.load(ck_ptr + (i_b * NT + k) * D + o_d, mask=m_d, other=0.0)
            h_prev = _segmented_scan(a_prev, b_prev, s, one, zero, seg_latest, earliest_seg, True)[0]
            tl.store(da_ptr + blk + off, (gg * h_prev).to(da_ptr.dtype.element_ty), mask=m)
    a0 = tl.load(a_ptr + i_b * T * D + o_d, mask=m_d, other=0.0).to(tl.float32)
    tl.store(dh0_ptr + i_b * D + o_d, a0 * G, mask=m_d)
