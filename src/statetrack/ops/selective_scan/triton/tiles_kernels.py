"""Triton kernels of the selective scan that walk time in tiles (the ``tiles`` algorithm; forward and backward).

Only ``@triton.jit`` code, imported by ``ops._triton.kernels_for``; launch layout and math: ``tiles.py``.

One program owns one block of channels of one sequence and walks time in tiles of BT steps: forward from the first
tile, backward from the last. Inside a tile the recurrence is an associative scan along time over the affine maps
(a_t, b_t) (``tl.associative_scan`` with ``affine``), and the state entering the tile is applied afterwards. Decays
are only multiplied, never divided or logged, so a = 0 and a = -1 are exact; masked rows (past T) and lanes load
delta = 0 and A = 0, so a = 1, b = 0: the identity map. The backward needs, per step, the state *before* the step and
the adjoint *after* it (exclusive scans); a shifted tile would cost another exp, so they come from ``affine_excl``,
which carries (P, Q), the composed map of all steps but the last, in the same pass.

Names: o_* index vectors, m_* masks, *_ptr pointers; ``dl`` is delta (the step size). Loops over tiles use
``tl.range`` with a bound that is a compile-time constant under the interpreter only (``ops._triton.loop_bound``).
"""

import triton
import triton.language as tl

from ..._scan_kernels import affine, affine_excl, program_block, selective_program_inputs, selective_transition


@triton.jit
def _sel_terms(u_ptr, dl_ptr, B_ptr, row, off_td, off_tn, m_td, m_tn, A, min_eigenvalue, Dm, N):
    """Loads of one tile and its scan terms: (u, delta [BT, BDm], B [BT, BN], e = exp(delta A), a, b [BT, BDm, BN])."""
    u = tl.load(u_ptr + row * Dm + off_td, mask=m_td, other=0.0).to(tl.float32)
    dl = tl.load(dl_ptr + row * Dm + off_td, mask=m_td, other=0.0).to(tl.float32)
    Bm = tl.load(B_ptr + row * N + off_tn, mask=m_tn, other=0.0).to(tl.float32)
    e, a = selective_transition(dl[:, :, None] * A[None, :, :], min_eigenvalue)
    b = (dl * u)[:, :, None] * Bm[:, None, :]
    return u, dl, Bm, e, a, b


@triton.jit
def _tile_layout(Dm, N, BT: tl.constexpr, BDm: tl.constexpr, BN: tl.constexpr):
    """This program's sequence i_b (int64) and channel block i_d, its index vectors o_t [BT] (steps of a tile),
    o_d [BDm] (channels), o_n [BN] (states), the masks m_d, m_n, m_dn [BDm, BN], and the offsets off_dn [BDm, BN]
    (into A and the states), off_td [BT, BDm] (into u-shaped rows), off_tn [BT, BN] (into B-shaped rows)."""
    i_b, i_d = program_block(Dm, BDm)
    o_t = tl.arange(0, BT)
    o_d = i_d * BDm + tl.arange(0, BDm)
    o_n = tl.arange(0, BN)
    m_d = o_d < Dm
    m_n = o_n < N
    m_dn = m_d[:, None] & m_n[None, :]
    off_dn = o_d[:, None] * N + o_n[None, :]
    off_td = o_t[:, None] * Dm + o_d[None, :]
    off_tn = o_t[:, None] * N + o_n[None, :]
    return i_b, i_d, o_t, o_d, o_n, m_d, m_n, m_dn, off_dn, off_td, off_tn


@triton.jit
def sel_fwd_kernel(
    u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, h0_ptr, y_ptr, ht_ptr, ck_ptr,
    min_eigenvalue, T, Dm, N, NT, NCK,
    BT: tl.constexpr, BDm: tl.constexpr, BN: tl.constexpr, R: tl.constexpr, NT_I: tl.constexpr, STAGES: tl.constexpr,
    USE_D: tl.constexpr, USE_Z: tl.constexpr, USE_H0: tl.constexpr, STORE_CK: tl.constexpr,
):  # fmt: skip
    """Grid (cdiv(Dm, BDm) * Bt,). u, delta, z, y [Bt, T, Dm]; A [Dm, N]; B, C [Bt, T, N]; D [Dm];
    h0, ht [Bt, Dm, N] fp32; ck [Bt, NCK, Dm, N] fp32: the state entering every R-th tile (a checkpoint every R BT
    steps). The [BDm, N] state stays in registers; y_t = C_t . h_t + D u_t, times silu(z_t)."""
    i_b, i_d, o_t, o_d, o_n, m_d, m_n, m_dn, off_dn, off_td, off_tn = _tile_layout(Dm, N, BT, BDm, BN)
    last = (o_t == BT - 1)[:, None, None]
    A, Dv, s = selective_program_inputs(
        A_ptr, D_ptr, h0_ptr, i_b, off_dn, m_dn, o_d, m_d, Dm, N, BDm, BN, USE_D, USE_H0
    )
    for k in tl.range(0, NT_I if NT_I > 0 else NT, num_stages=STAGES):
        row = i_b * T + k * BT
        m_t = (k * BT + o_t) < T
        m_td = m_t[:, None] & m_d[None, :]
        m_tn = m_t[:, None] & m_n[None, :]
        if STORE_CK:
            if k % R == 0:
                tl.store(ck_ptr + (i_b * NCK + k // R) * Dm * N + off_dn, s, mask=m_dn)
        u, dl, Bm, e, a, b = _sel_terms(u_ptr, dl_ptr, B_ptr, row, off_td, off_tn, m_td, m_tn, A, min_eigenvalue, Dm, N)
        Cm = tl.load(C_ptr + row * N + off_tn, mask=m_tn, other=0.0).to(tl.float32)
        a_c, b_c = tl.associative_scan((a, b), 0, affine)
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
    u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, ck_ptr, dy_ptr, dht_ptr, scr_ptr, du_ptr, ddl_ptr, dA_ptr,
    dB_ptr, dC_ptr, dD_ptr, dz_ptr, dh0_ptr,
    min_eigenvalue, T, Dm, N, NCK, NB,
    BT: tl.constexpr, BDm: tl.constexpr, BN: tl.constexpr, R: tl.constexpr, NCK_I: tl.constexpr, STAGES: tl.constexpr,
    USE_D: tl.constexpr, USE_Z: tl.constexpr, USE_DHT: tl.constexpr,
):  # fmt: skip
    """Grid (cdiv(Dm, BDm) * Bt,); same layouts as the forward, dy [Bt, T, Dm], dht [Bt, Dm, N] fp32.

    Walks the checkpoints from the last: (1) from checkpoint c, recompute the states entering its R tiles into this
    program's scratch slot scr [R, BDm, BN] (a few KiB, stays in L2); (2) walk those tiles backwards. Per tile, with
    e = exp(delta A), a = m + (1 - m) e (m = min_eigenvalue), x = delta u, b = x B, h from the forward scan, h_prev
    its exclusive part:
        dy0 = dy silu(z),  dz = dy y0 silu'(z),  g = dy0 C  (direct dL/dh),  G = g + Q_{t+1}  (as in the diag scan),
        d(delta A) = (1 - m) G h_prev e,  dA += d(delta A) delta,  ddelta = d(delta A) . A + (G . B) u,
        du = (G . B) delta + D dy0,  dD += dy0 u,  dB = sum_d G x,  dC = sum_d dy0 h.
    dB and dC sum over channels, so each program writes its block's share: dB, dC [NDB, Bt, T, N]; dA [Bt, Dm, N] and
    dD [Bt, Dm] are per-sequence shares; the launcher sums the shares (deterministic, no atomics)."""
    i_b, i_d, o_t, o_d, o_n, m_d, m_n, m_dn, off_dn, off_td, off_tn = _tile_layout(Dm, N, BT, BDm, BN)
    off_s = tl.arange(0, BDm)[:, None] * BN + o_n[None, :]
    scr = scr_ptr + tl.program_id(0).to(tl.int64) * (R * BDm * BN)
    last = (o_t == BT - 1)[:, None, None]
    first = (o_t == 0)[:, None, None]
    one = tl.full([BT, BDm, BN], 1.0, tl.float32)
    zero = tl.zeros([BT, BDm, BN], dtype=tl.float32)
    A, Dv, q = selective_program_inputs(
        A_ptr, D_ptr, dht_ptr, i_b, off_dn, m_dn, o_d, m_d, Dm, N, BDm, BN, USE_D, USE_DHT
    )
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
            _, _, _, _, a, b = _sel_terms(
                u_ptr, dl_ptr, B_ptr, row, off_td, off_tn, m_td, m_tn, A, min_eigenvalue, Dm, N
            )
            a_c, b_c = tl.associative_scan((a, b), 0, affine)
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
            u, dl, Bm, e, a, b = _sel_terms(
                u_ptr, dl_ptr, B_ptr, row, off_td, off_tn, m_td, m_tn, A, min_eigenvalue, Dm, N
            )
            Cm = tl.load(C_ptr + row * N + off_tn, mask=m_tn, other=0.0).to(tl.float32)
            dy = tl.load(dy_ptr + row * Dm + off_td, mask=m_td, other=0.0).to(tl.float32)
            a_f, b_f, p_f, q_f = tl.associative_scan((a, b, one, zero), 0, affine_excl)
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
            a_r, b_r, p_r, q_r = tl.associative_scan((a, a * g, one, zero), 0, affine_excl, reverse=True)
            G = g + q_r + p_r * q[None, :, :]
            q = tl.sum(tl.where(first, b_r + a_r * q[None, :, :], 0.0), 0)
            dlA = (1.0 - min_eigenvalue) * G * hp * e
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
