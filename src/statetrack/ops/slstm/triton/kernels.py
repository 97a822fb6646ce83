"""Triton kernels of the sLSTM recurrence (see ``ops.slstm.naive`` for the math), forward and backward.

One program per (block of BB batch rows, head): the head's four recurrent blocks r[h, :, g, :] ([K, K] each) stay
in registers and the walk over T is sequential inside the program, so a whole layer is one launch each way (the
plain loop is ~20 kernels per step). fp32 throughout; the products are exact fp32 (input_precision="ieee").
K is padded to BK (a power of two >= 16, as tl.dot needs); padded rows and columns hold zeros and stay finite.

The backward treats the stabiliser m as a constant: h does not depend on m (c and n both carry exp(-m)), so the
terms through m cancel exactly; only h's gradient is taken (the op is used without initial or final state).
It recomputes the pre-activations from wx and the stored h_{t-1}, and returns dL/dwx; dL/dr = sum h_{t-1}^T dwx is
one matmul outside.
Layouts: wx, dwx [B, T, 4, H, K]; r [H, K, 4, K]; h, c, n, m [B, T, H, K].
"""

import triton
import triton.language as tl


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _tanh(x):
    return 2.0 * _sigmoid(2.0 * x) - 1.0


@triton.jit
def _log_sigmoid(x):
    return tl.minimum(x, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(x)))


@triton.jit
def _r_block(R, h, g, K: tl.constexpr, BK: tl.constexpr):
    """r[h, :, g, :] as a [BK, BK] tile (rows k, columns j; zero padded)."""
    k = tl.arange(0, BK)
    j = tl.arange(0, BK)
    mask = (k[:, None] < K) & (j[None, :] < K)
    return tl.load(R + (h * K + k[:, None]) * 4 * K + g * K + j[None, :], mask=mask, other=0.0)


@triton.jit
def _program(R, B, K: tl.constexpr, BB: tl.constexpr, BK: tl.constexpr):
    """This program's head, batch rows (int64), columns, [BB, BK] mask and the head's four blocks of r."""
    hd = tl.program_id(1)
    rows = (tl.program_id(0) * BB + tl.arange(0, BB)).to(tl.int64)
    cols = tl.arange(0, BK)
    mask = (rows[:, None] < B) & (cols[None, :] < K)
    r_i = _r_block(R, hd, 0, K, BK)
    r_f = _r_block(R, hd, 1, K, BK)
    r_z = _r_block(R, hd, 2, K, BK)
    r_o = _r_block(R, hd, 3, K, BK)
    return hd, rows, cols, mask, r_i, r_f, r_z, r_o


@triton.jit
def _pre(gx, h_prev, r_i, r_f, r_z, r_o, mask, HK: tl.constexpr):
    """The four gate pre-activations wx_t + h_{t-1} r of one step; gx points at gate i of step t (gates HK apart)."""
    pi = tl.load(gx, mask=mask, other=0.0) + tl.dot(h_prev, r_i, input_precision="ieee")
    pf = tl.load(gx + HK, mask=mask, other=0.0) + tl.dot(h_prev, r_f, input_precision="ieee")
    pz = tl.load(gx + 2 * HK, mask=mask, other=0.0) + tl.dot(h_prev, r_z, input_precision="ieee")
    po = tl.load(gx + 3 * HK, mask=mask, other=0.0) + tl.dot(h_prev, r_o, input_precision="ieee")
    return pi, pf, pz, po


@triton.jit
def slstm_fwd_kernel(
    WX, R, Hs, Cs, Ns, Ms, B, T,
    H: tl.constexpr, K: tl.constexpr, BB: tl.constexpr, BK: tl.constexpr, T_I: tl.constexpr, SAVE: tl.constexpr,
):  # fmt: skip
    hd, rows, cols, mask, r_i, r_f, r_z, r_o = _program(R, B, K, BB, BK)
    h = tl.zeros((BB, BK), dtype=tl.float32)
    c = tl.zeros((BB, BK), dtype=tl.float32)
    n = tl.zeros((BB, BK), dtype=tl.float32)
    m = tl.zeros((BB, BK), dtype=tl.float32)
    for t in tl.range(0, T_I if T_I > 0 else T):
        gx = WX + ((rows[:, None] * T + t) * 4 * H + hd) * K + cols[None, :]
        pi, pf, pz, po = _pre(gx, h, r_i, r_f, r_z, r_o, mask, H * K)
        log_f = _log_sigmoid(pf)
        m_new = tl.maximum(log_f + m, pi)
        ig = tl.exp(pi - m_new)
        fg = tl.exp(log_f + m - m_new)
        c = fg * c + ig * _tanh(pz)
        n = fg * n + ig
        h = _sigmoid(po) * c / n
        m = m_new
        out = ((rows[:, None] * T + t) * H + hd) * K + cols[None, :]
        tl.store(Hs + out, h, mask=mask)
        if SAVE:
            tl.store(Cs + out, c, mask=mask)
            tl.store(Ns + out, n, mask=mask)
            tl.store(Ms + out, m, mask=mask)


@triton.jit
def slstm_bwd_kernel(
    WX, R, Hs, Cs, Ns, Ms, DH, DWX, B, T,
    H: tl.constexpr, K: tl.constexpr, BB: tl.constexpr, BK: tl.constexpr, T_I: tl.constexpr,
):  # fmt: skip
    hd, rows, cols, mask, r_i, r_f, r_z, r_o = _program(R, B, K, BB, BK)
    dh_rec = tl.zeros((BB, BK), dtype=tl.float32)  # dL/dh_t through step t + 1
    dc = tl.zeros((BB, BK), dtype=tl.float32)
    dn = tl.zeros((BB, BK), dtype=tl.float32)
    for tt in tl.range(0, T_I if T_I > 0 else T):
        t = T - 1 - tt
        at = ((rows[:, None] * T + t) * H + hd) * K + cols[None, :]
        prev_mask = mask & (t > 0)
        h_p = tl.load(Hs + at - H * K, mask=prev_mask, other=0.0)
        c_p = tl.load(Cs + at - H * K, mask=prev_mask, other=0.0)
        n_p = tl.load(Ns + at - H * K, mask=prev_mask, other=0.0)
        m_p = tl.load(Ms + at - H * K, mask=prev_mask, other=0.0)
        c = tl.load(Cs + at, mask=mask, other=0.0)
        n = tl.load(Ns + at, mask=mask, other=1.0)
        m = tl.load(Ms + at, mask=mask, other=0.0)
        goff = ((rows[:, None] * T + t) * 4 * H + hd) * K + cols[None, :]
        pi, pf, pz, po = _pre(WX + goff, h_p, r_i, r_f, r_z, r_o, mask, H * K)
        log_f = _log_sigmoid(pf)
        ig = tl.exp(pi - m)
        fg = tl.exp(log_f + m_p - m)
        tz = _tanh(pz)
        so = _sigmoid(po)
        dh = tl.load(DH + at, mask=mask, other=0.0) + dh_rec
        d_po = dh * (c / n) * so * (1.0 - so)
        dc += dh * so / n
        dn -= dh * so * c / (n * n)
        d_pi = (dc * tz + dn) * ig
        d_pf = (dc * c_p + dn * n_p) * fg * _sigmoid(-pf)
        d_pz = dc * ig * (1.0 - tz * tz)
        tl.store(DWX + goff, d_pi, mask=mask)
        tl.store(DWX + goff + H * K, d_pf, mask=mask)
        tl.store(DWX + goff + 2 * H * K, d_pz, mask=mask)
        tl.store(DWX + goff + 3 * H * K, d_po, mask=mask)
        dh_rec = tl.dot(d_pi, tl.trans(r_i), input_precision="ieee")
        dh_rec += tl.dot(d_pf, tl.trans(r_f), input_precision="ieee")
        dh_rec += tl.dot(d_pz, tl.trans(r_z), input_precision="ieee")
        dh_rec += tl.dot(d_po, tl.trans(r_o), input_precision="ieee")
        dc = dc * fg
        dn = dn * fg
