"""Triton kernels of the selective scan that walk time one step at a time (the ``steps`` path; forward and backward).

Only ``@triton.jit`` code, imported by ``ops._triton.kernels_for``; launch layout and math: ``steps.py``.

Where many sequences run at once (Table 3: 1,024 sequences of 40 steps, 256 channels) there is parallelism enough
across sequences and channels, and the tiles kernels' parallelism along time (``tiles_kernels.py``) only costs: their
backward is a four-warp program whose sums over channels (dB, dC) cross warps through shared memory, with 18 layout
conversions (sm_90 TTGIR). Here each one-warp program owns BDm channels x BN states of one sequence, [BDm, BN] fp32
in registers, and a step is elementwise work plus sums over N (y) or over channels (dB, dC) within the warp. The
grid is persistent (a few programs per multiprocessor, each taking work items (sequence, channel block) in turn), so
that the backward's scratch is per program, not per item.
"""

import triton
import triton.language as tl

from ..._scan_kernels import selective_program_inputs, selective_transition


@triton.jit
def _item(i, n_work, n_d, Dm, N, BDm: tl.constexpr, BN: tl.constexpr):
    """This program's i-th work item w (programs take items pid, pid + grid, ...) -> (sequence index int64, channel
    block, channels [BDm], their mask, [BDm, BN] state offsets and mask, whether w < n_work). The masks are off for
    w >= n_work (the last round of a grid that does not divide the items): such an item loads zeros, stores
    nothing."""
    w = tl.program_id(0) + i * tl.num_programs(0)
    w_ok = w < n_work
    w = tl.minimum(w, n_work - 1)
    i_b = (w // n_d).to(tl.int64)
    o_d = (w % n_d) * BDm + tl.arange(0, BDm)
    o_n = tl.arange(0, BN)
    m_d = (o_d < Dm) & w_ok
    m_dn = m_d[:, None] & (o_n < N)[None, :]
    return i_b, w % n_d, o_d, m_d, o_d[:, None] * N + o_n[None, :], m_dn, w_ok


@triton.jit
def _step_in(u_ptr, dl_ptr, B_ptr, row, o_d, m_d, o_n, m_n, Dm, N):
    """u, delta [BDm] and B [BN] of one step (fp32; zero on masked lanes and steps, so a = 1 and b = 0 there: the
    identity, which carries the state and the adjoint through unchanged)."""
    u = tl.load(u_ptr + row * Dm + o_d, mask=m_d, other=0.0).to(tl.float32)
    dl = tl.load(dl_ptr + row * Dm + o_d, mask=m_d, other=0.0).to(tl.float32)
    Bv = tl.load(B_ptr + row * N + o_n, mask=m_n, other=0.0).to(tl.float32)
    return u, dl, Bv


@triton.jit
def _fwd_in(u_ptr, dl_ptr, B_ptr, C_ptr, z_ptr, row, o_d, m_d, o_n, m_n, Dm, N, USE_Z: tl.constexpr):
    """u, delta, B, C and z (u when there is none) of one step, fp32."""
    u, dl, Bv = _step_in(u_ptr, dl_ptr, B_ptr, row, o_d, m_d, o_n, m_n, Dm, N)
    Cv = tl.load(C_ptr + row * N + o_n, mask=m_n, other=0.0).to(tl.float32)
    if USE_Z:
        z = tl.load(z_ptr + row * Dm + o_d, mask=m_d, other=0.0).to(tl.float32)
    else:
        z = u
    return u, dl, Bv, Cv, z


@triton.jit
def _bwd_in(scr, off_s, j, u_ptr, dl_ptr, B_ptr, C_ptr, dy_ptr, z_ptr, row, o_d, m_d, o_n, m_n, Dm, N,
            BDm: tl.constexpr, BN: tl.constexpr, USE_Z: tl.constexpr):  # fmt: skip
    """The backward's inputs of one step: the state before it (scratch slot j), u, delta, B, C, z and dy."""
    hp = tl.load(scr + j * BDm * BN + off_s)
    u, dl, Bv, Cv, z = _fwd_in(u_ptr, dl_ptr, B_ptr, C_ptr, z_ptr, row, o_d, m_d, o_n, m_n, Dm, N, USE_Z)
    dy = tl.load(dy_ptr + row * Dm + o_d, mask=m_d, other=0.0).to(tl.float32)
    return hp, u, dl, Bv, Cv, z, dy


@triton.jit
def sel_steps_fwd_kernel(
    u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, h0_ptr, y_ptr, ht_ptr, ck_ptr,
    min_eigenvalue, T, Dm, N, NCK, n_work, ITEMS,
    BDm: tl.constexpr, BN: tl.constexpr, CK: tl.constexpr, ITEMS_I: tl.constexpr, T_I: tl.constexpr,
    PREFETCH: tl.constexpr, UNROLL: tl.constexpr, USE_D: tl.constexpr, USE_Z: tl.constexpr, USE_H0: tl.constexpr,
    STORE_CK: tl.constexpr,
):  # fmt: skip
    """Persistent grid; items (sequence, channel block). u, delta, z, y [Bt, T, Dm]; A [Dm, N]; B, C [Bt, T, N];
    D [Dm]; h0, ht [Bt, Dm, N] fp32; ck [Bt, NCK, Dm, N] fp32: the state entering steps 0, CK, 2 CK, ..."""
    n_d = tl.cdiv(Dm, BDm)
    o_n = tl.arange(0, BN)
    for i in range(0, ITEMS_I if ITEMS_I > 0 else ITEMS):
        i_b, _, o_d, m_d, off_dn, m_dn, w_ok = _item(i, n_work, n_d, Dm, N, BDm, BN)
        m_n = (o_n < N) & w_ok
        A, Dv, s = selective_program_inputs(A_ptr, D_ptr, h0_ptr, i_b, off_dn, m_dn, o_d, m_d, Dm, N, BDm, BN, USE_D,
                                            USE_H0)  # fmt: skip
        r0 = i_b * T
        if PREFETCH:
            u_n, dl_n, B_n, C_n, z_n = _fwd_in(u_ptr, dl_ptr, B_ptr, C_ptr, z_ptr, r0, o_d, m_d, o_n, m_n, Dm, N, USE_Z)
        for t in tl.range(0, T_I if T_I > 0 else T, loop_unroll_factor=UNROLL):
            if STORE_CK:
                if t % CK == 0:
                    tl.store(ck_ptr + (i_b * NCK + t // CK) * Dm * N + off_dn, s, mask=m_dn)
            row = i_b * T + t
            if PREFETCH:  # this step's inputs came with the previous step; ask for the next step's now
                u, dl, Bv, Cv, z = u_n, dl_n, B_n, C_n, z_n
                ok = t + 1 < T
                u_n, dl_n, B_n, C_n, z_n = _fwd_in(
                    u_ptr, dl_ptr, B_ptr, C_ptr, z_ptr, row + 1, o_d, m_d & ok, o_n, m_n & ok, Dm, N, USE_Z
                )
            else:
                u, dl, Bv, Cv, z = _fwd_in(u_ptr, dl_ptr, B_ptr, C_ptr, z_ptr, row, o_d, m_d, o_n, m_n, Dm, N, USE_Z)
            a = selective_transition(dl[:, None] * A, min_eigenvalue)[1]
            s = a * s + (dl * u)[:, None] * Bv[None, :]
            y = tl.sum(s * Cv[None, :], 1)
            if USE_D:
                y += Dv * u
            if USE_Z:
                y = y * z * tl.sigmoid(z)
            tl.store(y_ptr + row * Dm + o_d, y.to(y_ptr.dtype.element_ty), mask=m_d)
        tl.store(ht_ptr + i_b * Dm * N + off_dn, s, mask=m_dn)


@triton.jit
def sel_steps_bwd_kernel(
    u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, ck_ptr, dy_ptr, dht_ptr, scr_ptr, du_ptr, ddl_ptr, dA_ptr,
    dB_ptr, dC_ptr, dD_ptr, dz_ptr, dh0_ptr,
    min_eigenvalue, T, Dm, N, NCK, NB, n_work, ITEMS,
    BDm: tl.constexpr, BN: tl.constexpr, CK: tl.constexpr, ITEMS_I: tl.constexpr, NCK_I: tl.constexpr,
    PREFETCH: tl.constexpr, UNROLL: tl.constexpr, USE_D: tl.constexpr, USE_Z: tl.constexpr, USE_DHT: tl.constexpr,
):  # fmt: skip
    """Persistent grid; same layouts as the forward; dy [Bt, T, Dm], dht [Bt, Dm, N] fp32; scr [programs, CK, BDm,
    BN] fp32. Per checkpoint, last first: (1) from the checkpoint, recompute the state entering each of its CK steps
    into this program's scratch; (2) walk those steps backwards. Per step t, with e = exp(delta A), a = m + (1 - m) e
    (m = min_eigenvalue), x = delta u, h_prev from the scratch and h = a h_prev + x B:
        dy0 = dy silu(z), dz = dy y0 silu'(z), G = dy0 C + q (q: a_{t+1} G_{t+1}, carried), then q = a G,
        d(delta A) = (1 - m) G h_prev e, dA += d(delta A) delta, ddelta = d(delta A) . A + (G . B) u,
        du = (G . B) delta + D dy0, dD += dy0 u, dB_t = sum_d G x, dC_t = sum_d dy0 h.
    dB, dC [NDB, Bt, T, N], dA [Bt, Dm, N] and dD [Bt, Dm] are each item's shares; the launcher sums them."""
    n_d = tl.cdiv(Dm, BDm)
    o_n = tl.arange(0, BN)
    off_s = tl.arange(0, BDm)[:, None] * BN + o_n[None, :]
    scr = scr_ptr + tl.program_id(0).to(tl.int64) * (CK * BDm * BN)
    for i in range(0, ITEMS_I if ITEMS_I > 0 else ITEMS):
        i_b, i_d, o_d, m_d, off_dn, m_dn, w_ok = _item(i, n_work, n_d, Dm, N, BDm, BN)
        m_n = (o_n < N) & w_ok  # no dB, dC rows from an item past the end
        part = (i_d * NB + i_b) * T * N  # this item's rows of the dB, dC shares
        A, Dv, q = selective_program_inputs(A_ptr, D_ptr, dht_ptr, i_b, off_dn, m_dn, o_d, m_d, Dm, N, BDm, BN, USE_D,
                                            USE_DHT)  # fmt: skip
        dA = tl.zeros([BDm, BN], dtype=tl.float32)
        dD = tl.zeros([BDm], dtype=tl.float32)
        for cc in range(0, NCK_I if NCK_I > 0 else NCK):
            c = NCK - 1 - cc
            t0 = c * CK
            # (1) the states entering the chunk's steps (all CK of them: steps past T load the identity)
            s = tl.load(ck_ptr + (i_b * NCK + c) * Dm * N + off_dn, mask=m_dn, other=0.0)
            r0 = i_b * T + t0
            if PREFETCH:
                u_n, dl_n, B_n = _step_in(u_ptr, dl_ptr, B_ptr, r0, o_d, m_d & (t0 < T), o_n, m_n & (t0 < T), Dm, N)
            for j in tl.range(0, CK, loop_unroll_factor=UNROLL):
                tl.store(scr + j * BDm * BN + off_s, s)
                ok = t0 + j < T
                if PREFETCH:
                    u, dl, Bv = u_n, dl_n, B_n
                    ok1 = (t0 + j + 1 < T) & (j + 1 < CK)
                    u_n, dl_n, B_n = _step_in(u_ptr, dl_ptr, B_ptr, r0 + j + 1, o_d, m_d & ok1, o_n, m_n & ok1, Dm, N)
                else:
                    u, dl, Bv = _step_in(u_ptr, dl_ptr, B_ptr, r0 + j, o_d, m_d & ok, o_n, m_n & ok, Dm, N)
                s = selective_transition(dl[:, None] * A, min_eigenvalue)[1] * s + (dl * u)[:, None] * Bv[None, :]
            tl.debug_barrier()  # the scratch written above is read below
            # (2) the chunk's steps, last first
            if PREFETCH:
                t_last = t0 + CK - 1
                ok = t_last < T
                hp_n, u_n, dl_n, B_n, C_n, z_n, dy_n = _bwd_in(
                    scr, off_s, CK - 1, u_ptr, dl_ptr, B_ptr, C_ptr, dy_ptr, z_ptr, i_b * T + t_last, o_d, m_d & ok,
                    o_n, m_n & ok, Dm, N, BDm, BN, USE_Z,
                )  # fmt: skip
            for jj in tl.range(0, CK, loop_unroll_factor=UNROLL):
                j = CK - 1 - jj
                t = t0 + j
                row = i_b * T + t
                m_dt = m_d & (t < T)
                m_nt = m_n & (t < T)
                if PREFETCH:  # the step before (in this chunk: its state is in the scratch already)
                    hp, u, dl, Bv, Cv, z, dy = hp_n, u_n, dl_n, B_n, C_n, z_n, dy_n
                    ok1 = (j >= 1) & (t - 1 < T)
                    hp_n, u_n, dl_n, B_n, C_n, z_n, dy_n = _bwd_in(
                        scr, off_s, tl.maximum(j - 1, 0), u_ptr, dl_ptr, B_ptr, C_ptr, dy_ptr, z_ptr, row - 1, o_d,
                        m_d & ok1, o_n, m_n & ok1, Dm, N, BDm, BN, USE_Z,
                    )  # fmt: skip
                else:
                    hp, u, dl, Bv, Cv, z, dy = _bwd_in(
                        scr, off_s, j, u_ptr, dl_ptr, B_ptr, C_ptr, dy_ptr, z_ptr, row, o_d, m_dt, o_n, m_nt, Dm, N,
                        BDm, BN, USE_Z,
                    )  # fmt: skip
                e, a = selective_transition(dl[:, None] * A, min_eigenvalue)
                x = dl * u
                h = a * hp + x[:, None] * Bv[None, :]
                if USE_Z:
                    sz = tl.sigmoid(z)
                    y0 = tl.sum(h * Cv[None, :], 1)
                    if USE_D:
                        y0 += Dv * u
                    dz = dy * y0 * sz * (1.0 + z * (1.0 - sz))  # silu'(z) = sigmoid(z) (1 + z (1 - sigmoid(z)))
                    tl.store(dz_ptr + row * Dm + o_d, dz.to(dz_ptr.dtype.element_ty), mask=m_dt)
                    dy = dy * z * sz
                G = dy[:, None] * Cv[None, :] + q
                q = a * G
                dlA = (1.0 - min_eigenvalue) * G * hp * e
                dA += dlA * dl[:, None]
                dx = tl.sum(G * Bv[None, :], 1)
                du = dx * dl
                if USE_D:
                    du += dy * Dv
                    dD += dy * u
                ddl = tl.sum(dlA * A, 1) + dx * u
                tl.store(du_ptr + row * Dm + o_d, du.to(du_ptr.dtype.element_ty), mask=m_dt)
                tl.store(ddl_ptr + row * Dm + o_d, ddl.to(ddl_ptr.dtype.element_ty), mask=m_dt)
                tl.store(dB_ptr + part + t * N + o_n, tl.sum(G * x[:, None], 0), mask=m_nt)
                tl.store(dC_ptr + part + t * N + o_n, tl.sum(dy[:, None] * h, 0), mask=m_nt)
            tl.debug_barrier()  # before the next chunk overwrites the scratch
        tl.store(dh0_ptr + i_b * Dm * N + off_dn, q, mask=m_dn)
        tl.store(dA_ptr + i_b * Dm * N + off_dn, dA, mask=m_dn)
        if USE_D:
            tl.store(dD_ptr + i_b * Dm + o_d, dD, mask=m_d)
