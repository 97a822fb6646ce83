"""Triton kernels of the signed diagonal scan and of Mamba-1's selective scan (forward and backward).

This module holds only ``@triton.jit`` code and imports nothing from the package (``ops._triton.kernels_for``
imports it once the device is known to be able to run it). Math and launch layout: ``diag.py`` and ``selective.py``.

One program owns one block of channels of one sequence and walks time in tiles of BT steps: forward from the first
tile, backward from the last. Inside a tile the recurrence h_t = a_t h_{t-1} + b_t is an associative scan along time
over the affine maps (a_t, b_t) (``tl.associative_scan`` with :func:`_affine`), and the state entering the tile is
applied afterwards: h_t = B_t + A_t s with (A_t, B_t) the composed map of the tile's steps 0..t (the diag kernels
scan in two levels, inside segments of R steps and over the segments, see :func:`diag_fwd_kernel`). Decays are only
multiplied, never divided or logged, so a = 0 and a = -1 are exact. Masked rows (past T) and lanes load a = 1, b = 0:
the identity map, so they carry the state through unchanged and need no special case.

The backward needs, per step, the state *before* the step (h_{t-1}, for da) and the adjoint *after* it
(a_{t+1} G_{t+1}): exclusive scans. The diag backward loads tiles of a, b one step early or late for them (those bytes
come from L2); the selective backward cannot (a shifted tile would cost another exp), so it takes them from
:func:`_affine_excl`, which carries (P, Q), the composed map of all steps but the last, in the same pass.

Names: b_* register tiles are avoided in favour of plain math letters; o_* index vectors, m_* masks, *_ptr pointers.
Loops over tiles use ``tl.range`` with a bound that is a compile-time constant under the interpreter only
(see ``ops._triton.loop_bound``); 64-bit offsets come from the (int64) sequence index, so T * D may exceed 2^31.
"""

import triton
import triton.language as tl


@triton.jit
def _affine(a1, b1, a2, b2):
    """Compose x -> a1 x + b1 (earlier) with x -> a2 x + b2 (later)."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _affine_excl(a1, b1, p1, q1, a2, b2, p2, q2):
    """:func:`_affine` plus (p, q): the map of every step of the segment but its last.

    A single step enters as (a, b, 1, 0). For a segment x followed by y, "all but the last" of x y is x followed by
    "all but the last" of y. With ``reverse=True`` (Triton flips, scans, flips back) the "last" step is the earliest
    in time, so (p, q) is then the map of the steps strictly after t."""
    return a1 * a2, a2 * b1 + b2, a1 * p2, p2 * b1 + q2


@triton.jit
def _block(D, BD: tl.constexpr):
    """(sequence index as int64, channel block) of this program. One grid axis, channel blocks fastest: neighbouring
    programs read neighbouring bytes of a time step, and the sequence count is not bound by grid axis 1's 65535."""
    n_d = tl.cdiv(D, BD)
    pid = tl.program_id(0)
    return (pid // n_d).to(tl.int64), pid % n_d


# ----------------------------------------------------------------------------------------------------- diag_scan


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
    i_b, i_d = _block(D, BD)
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
        a_c, b_c = tl.associative_scan((a, b), 1, _affine)  # inside segments
        a_s = tl.sum(tl.where(seg_end, a_c, 0.0), 1)  # segment totals [S, BD]
        b_s = tl.sum(tl.where(seg_end, b_c, 0.0), 1)
        _, _, p, q = tl.associative_scan((a_s, b_s, one, zero), 0, _affine_excl)
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
    i_b, i_d = _block(D, BD)
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
        p, l = tl.associative_scan((a_next, g), 1, _affine)
        p_s = tl.sum(tl.where(seg_earliest, p, 0.0), 1)
        l_s = tl.sum(tl.where(seg_earliest, l, 0.0), 1)
        _, _, pp, qq = tl.associative_scan((p_s, l_s, one, zero), 0, _affine_excl)
        g_in = qq + pp * G[None, :]  # G just after each segment's latest step
        gg = l + p * g_in[:, None, :]
        if NEED_DB:
            tl.store(db_ptr + blk + off, gg.to(db_ptr.dtype.element_ty), mask=m)
        if NEED_DA:
            m_prev = (rt > 0) & (t <= T) & m_d[None, None, :]
            a_prev = tl.load(a_ptr + blk - D + off, mask=m_prev, other=1.0).to(tl.float32)
            b_prev = tl.load(b_ptr + blk - D + off, mask=m_prev, other=0.0).to(tl.float32)
            s = tl.load(ck_ptr + (i_b * NT + k) * D + o_d, mask=m_d, other=0.0)
            pa, pb = tl.associative_scan((a_prev, b_prev), 1, _affine, reverse=True)
            pa_s = tl.sum(tl.where(seg_latest, pa, 0.0), 1)
            pb_s = tl.sum(tl.where(seg_latest, pb, 0.0), 1)
            _, _, pp2, qq2 = tl.associative_scan((pa_s, pb_s, one, zero), 0, _affine_excl, reverse=True)
            enter = qq2 + pp2 * s[None, :]  # state entering each segment (at its earliest step)
            h_prev = pb + pa * enter[:, None, :]
            tl.store(da_ptr + blk + off, (gg * h_prev).to(da_ptr.dtype.element_ty), mask=m)
        G = tl.sum(tl.where(earliest_seg, l_s + p_s * g_in, 0.0), 0)
    a0 = tl.load(a_ptr + i_b * T * D + o_d, mask=m_d, other=0.0).to(tl.float32)
    tl.store(dh0_ptr + i_b * D + o_d, a0 * G, mask=m_d)


# ------------------------------------------------------------------------------------------------ selective_scan


@triton.jit
def _sel_terms(u_ptr, dl_ptr, B_ptr, row, off_td, off_tn, m_td, m_tn, A, lo, Dm, N):
    """Loads of one tile and its scan terms: (u, delta [BT, BDm], B [BT, BN], e = exp(delta A), a, b [BT, BDm, BN])."""
    u = tl.load(u_ptr + row * Dm + off_td, mask=m_td, other=0.0).to(tl.float32)
    dl = tl.load(dl_ptr + row * Dm + off_td, mask=m_td, other=0.0).to(tl.float32)
    Bm = tl.load(B_ptr + row * N + off_tn, mask=m_tn, other=0.0).to(tl.float32)
    e = tl.exp(dl[:, :, None] * A[None, :, :])
    a = lo + (1.0 - lo) * e  # exactly e at lo = 0 (the original Mamba)
    b = (dl * u)[:, :, None] * Bm[:, None, :]
    return u, dl, Bm, e, a, b


@triton.jit
def sel_fwd_kernel(
    u_ptr,
    dl_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    h0_ptr,
    y_ptr,
    ht_ptr,
    ck_ptr,
    lo,
    T,
    Dm,
    N,
    NT,
    NCK,
    BT: tl.constexpr,
    BDm: tl.constexpr,
    BN: tl.constexpr,
    R: tl.constexpr,
    NT_I: tl.constexpr,
    STAGES: tl.constexpr,
    USE_D: tl.constexpr,
    USE_Z: tl.constexpr,
    USE_H0: tl.constexpr,
    STORE_CK: tl.constexpr,
):
    """Grid (cdiv(Dm, BDm) * Bt,). u, delta, z, y [Bt, T, Dm]; A [Dm, N]; B, C [Bt, T, N]; D [Dm];
    h0, ht [Bt, Dm, N] fp32; ck [Bt, NCK, Dm, N] fp32: the state entering every R-th tile (a checkpoint every R BT
    steps). The [BDm, N] state stays in registers; y_t = C_t . h_t + D u_t, times silu(z_t)."""
    i_b, i_d = _block(Dm, BDm)
    o_t = tl.arange(0, BT)
    o_d = i_d * BDm + tl.arange(0, BDm)
    o_n = tl.arange(0, BN)
    m_d = o_d < Dm
    m_n = o_n < N
    m_dn = m_d[:, None] & m_n[None, :]
    off_dn = o_d[:, None] * N + o_n[None, :]
    off_td = o_t[:, None] * Dm + o_d[None, :]
    off_tn = o_t[:, None] * N + o_n[None, :]
    last = (o_t == BT - 1)[:, None, None]
    A = tl.load(A_ptr + off_dn, mask=m_dn, other=0.0).to(tl.float32)  # A = 0 on padding lanes: a = 1, identity
    if USE_D:
        Dv = tl.load(D_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)
    if USE_H0:
        s = tl.load(h0_ptr + i_b * Dm * N + off_dn, mask=m_dn, other=0.0).to(tl.float32)
    else:
        s = tl.zeros([BDm, BN], dtype=tl.float32)
    for k in tl.range(0, NT_I if NT_I > 0 else NT, num_stages=STAGES):
        row = i_b * T + k * BT
        m_t = (k * BT + o_t) < T
        m_td = m_t[:, None] & m_d[None, :]
        m_tn = m_t[:, None] & m_n[None, :]
        if STORE_CK:
            if k % R == 0:
                tl.store(ck_ptr + (i_b * NCK + k // R) * Dm * N + off_dn, s, mask=m_dn)
        u, dl, Bm, e, a, b = _sel_terms(u_ptr, dl_ptr, B_ptr, row, off_td, off_tn, m_td, m_tn, A, lo, Dm, N)
        Cm = tl.load(C_ptr + row * N + off_tn, mask=m_tn, other=0.0).to(tl.float32)
        a_c, b_c = tl.associative_scan((a, b), 0, _affine)
        h = b_c + a_c * s[None, :, :]
        y = tl.sum(h * Cm[:, None, :], 2)
        if USE_D:
            y += Dv[None, :] * u
        if USE_Z:
            z = tl.load(z_ptr + row * Dm + off_td, mask=m_td, other=0.0).to(tl.float32)
            y = y * z * tl.sigmoid(z)
        tl.store(y_ptr + row * Dm + off_td, y.to(y_ptr.dtype.element_ty), mask=m_td)
        s = tl.sum(tl.where(last, h, 0.0), 0)
    tl.store(ht_ptr + i_b * Dm * N + off_dn, s, mask=m_dn)


@triton.jit
def sel_bwd_kernel(
    u_ptr,
    dl_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    ck_ptr,
    dy_ptr,
    dht_ptr,
    scr_ptr,
    du_ptr,
    ddl_ptr,
    dA_ptr,
    dB_ptr,
    dC_ptr,
    dD_ptr,
    dz_ptr,
    dh0_ptr,
    lo,
    T,
    Dm,
    N,
    NCK,
    NB,
    BT: tl.constexpr,
    BDm: tl.constexpr,
    BN: tl.constexpr,
    R: tl.constexpr,
    NCK_I: tl.constexpr,
    STAGES: tl.constexpr,
    USE_D: tl.constexpr,
    USE_Z: tl.constexpr,
    USE_DHT: tl.constexpr,
):
    """Grid (cdiv(Dm, BDm) * Bt,); same layouts as the forward, dy [Bt, T, Dm], dht [Bt, Dm, N] fp32.

    Walks the checkpoints from the last: (1) from checkpoint c, recompute the states entering its R tiles into this
    program's scratch slot scr [R, BDm, BN] (a few KiB, stays in L2); (2) walk those tiles backwards. Per tile, with
    e = exp(delta A), a = lo + (1 - lo) e, x = delta u, b = x B, h from the forward scan, h_prev its exclusive part:
        dy0 = dy silu(z),  dz = dy y0 silu'(z),  g = dy0 C  (direct dL/dh),  G = g + Q_{t+1}  (as in the diag scan),
        d(delta A) = (1 - lo) G h_prev e,  dA += d(delta A) delta,  ddelta = d(delta A) . A + (G . B) u,
        du = (G . B) delta + D dy0,  dD += dy0 u,  dB = sum_d G x,  dC = sum_d dy0 h.
    dB and dC sum over channels, so each program writes its block's share: dB, dC [NDB, Bt, T, N]; dA [Bt, Dm, N] and
    dD [Bt, Dm] are per-sequence shares; the launcher sums the shares (deterministic, no atomics)."""
    i_b, i_d = _block(Dm, BDm)
    o_t = tl.arange(0, BT)
    o_dl = tl.arange(0, BDm)
    o_d = i_d * BDm + o_dl
    o_n = tl.arange(0, BN)
    m_d = o_d < Dm
    m_n = o_n < N
    m_dn = m_d[:, None] & m_n[None, :]
    off_dn = o_d[:, None] * N + o_n[None, :]
    off_td = o_t[:, None] * Dm + o_d[None, :]
    off_tn = o_t[:, None] * N + o_n[None, :]
    off_s = o_dl[:, None] * BN + o_n[None, :]
    scr = scr_ptr + tl.program_id(0).to(tl.int64) * (R * BDm * BN)
    last = (o_t == BT - 1)[:, None, None]
    first = (o_t == 0)[:, None, None]
    one = tl.full([BT, BDm, BN], 1.0, tl.float32)
    zero = tl.zeros([BT, BDm, BN], dtype=tl.float32)
    A = tl.load(A_ptr + off_dn, mask=m_dn, other=0.0).to(tl.float32)
    if USE_D:
        Dv = tl.load(D_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)
    if USE_DHT:
        q = tl.load(dht_ptr + i_b * Dm * N + off_dn, mask=m_dn, other=0.0).to(tl.float32)
    else:
        q = tl.zeros([BDm, BN], dtype=tl.float32)
    dA = tl.zeros([BDm, BN], dtype=tl.float32)
    dD = tl.zeros([BDm], dtype=tl.float32)
    for cc in range(0, NCK_I if NCK_I > 0 else NCK):
        c = NCK - 1 - cc
        # (1) states entering the chunk's tiles
        s = tl.load(ck_ptr + (i_b * NCK + c) * Dm * N + off_dn, mask=m_dn, other=0.0)
        tl.store(scr + off_s, s)
        for r in range(0, R - 1):
            k = c * R + r
            m_t = (k * BT + o_t) < T
            m_td = m_t[:, None] & m_d[None, :]
            m_tn = m_t[:, None] & m_n[None, :]
            row = i_b * T + k * BT
            _, _, _, _, a, b = _sel_terms(u_ptr, dl_ptr, B_ptr, row, off_td, off_tn, m_td, m_tn, A, lo, Dm, N)
            a_c, b_c = tl.associative_scan((a, b), 0, _affine)
            s = tl.sum(tl.where(last, b_c + a_c * s[None, :, :], 0.0), 0)
            tl.store(scr + (r + 1) * BDm * BN + off_s, s)
        tl.debug_barrier()  # the scratch written above is read below by other threads of this program
        # (2) the chunk's tiles, last first
        for rr in tl.range(0, R, num_stages=STAGES):
            r = R - 1 - rr
            k = c * R + r
            row = i_b * T + k * BT
            m_t = (k * BT + o_t) < T
            m_td = m_t[:, None] & m_d[None, :]
            m_tn = m_t[:, None] & m_n[None, :]
            s = tl.load(scr + r * BDm * BN + off_s)
            u, dl, Bm, e, a, b = _sel_terms(u_ptr, dl_ptr, B_ptr, row, off_td, off_tn, m_td, m_tn, A, lo, Dm, N)
            Cm = tl.load(C_ptr + row * N + off_tn, mask=m_tn, other=0.0).to(tl.float32)
            dy = tl.load(dy_ptr + row * Dm + off_td, mask=m_td, other=0.0).to(tl.float32)
            a_f, b_f, p_f, q_f = tl.associative_scan((a, b, one, zero), 0, _affine_excl)
            h = b_f + a_f * s[None, :, :]
            hp = q_f + p_f * s[None, :, :]
            if USE_Z:
                z = tl.load(z_ptr + row * Dm + off_td, mask=m_td, other=0.0).to(tl.float32)
                sz = tl.sigmoid(z)
                y0 = tl.sum(h * Cm[:, None, :], 2)
                if USE_D:
                    y0 += Dv[None, :] * u
                dz = dy * y0 * sz * (1.0 + z * (1.0 - sz))  # silu'(z) = sigmoid(z) (1 + z (1 - sigmoid(z)))
                tl.store(dz_ptr + row * Dm + off_td, dz.to(dz_ptr.dtype.element_ty), mask=m_td)
                dy = dy * z * sz
            g = dy[:, :, None] * Cm[:, None, :]
            a_r, b_r, p_r, q_r = tl.associative_scan((a, a * g, one, zero), 0, _affine_excl, reverse=True)
            G = g + q_r + p_r * q[None, :, :]
            q = tl.sum(tl.where(first, b_r + a_r * q[None, :, :], 0.0), 0)
            dlA = (1.0 - lo) * G * hp * e
            dA += tl.sum(dlA * dl[:, :, None], 0)
            dx = tl.sum(G * Bm[:, None, :], 2)
            du = dx * dl
            if USE_D:
                du += dy * Dv[None, :]
                dD += tl.sum(dy * u, 0)
            ddl = tl.sum(dlA * A[None, :, :], 2) + dx * u
            tl.store(du_ptr + row * Dm + off_td, du.to(du_ptr.dtype.element_ty), mask=m_td)
            tl.store(ddl_ptr + row * Dm + off_td, ddl.to(ddl_ptr.dtype.element_ty), mask=m_td)
            part = ((i_d * NB + i_b) * T + k * BT) * N
            tl.store(dB_ptr + part + off_tn, tl.sum(G * (dl * u)[:, :, None], 1), mask=m_tn)
            tl.store(dC_ptr + part + off_tn, tl.sum(dy[:, :, None] * h, 1), mask=m_tn)
        tl.debug_barrier()  # before the next chunk overwrites the scratch
    tl.store(dh0_ptr + i_b * Dm * N + off_dn, q, mask=m_dn)
    tl.store(dA_ptr + i_b * Dm * N + off_dn, dA, mask=m_dn)
    if USE_D:
        tl.store(dD_ptr + i_b * Dm + o_d, dD, mask=m_d)
