"""``@triton.jit`` helpers shared by the diagonal-scan and selective-scan kernels (inlined: no call at run time).

Only Triton code, like every kernel module: it is imported by the kernel modules, which ``ops._triton.kernels_for``
imports on first use.
"""

import triton
import triton.language as tl


@triton.jit
def affine(a1, b1, a2, b2):
    """Compose x -> a1 x + b1 (earlier) with x -> a2 x + b2 (later): the combine of every scan along time."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def affine_excl(a1, b1, p1, q1, a2, b2, p2, q2):
    """:func:`affine` plus (p, q): the map of every step of the segment but its last.

    A single step enters as (a, b, 1, 0). For a segment x followed by y, "all but the last" of x y is x followed by
    "all but the last" of y. With ``reverse=True`` (Triton flips, scans, flips back) the "last" step is the earliest
    in time, so (p, q) is then the map of the steps strictly after t."""
    return a1 * a2, a2 * b1 + b2, a1 * p2, p2 * b1 + q2


@triton.jit
def program_block(D, BD: tl.constexpr):
    """(sequence index as int64, channel block) of this program. One grid axis, channel blocks fastest: neighbouring
    programs read neighbouring bytes of a time step, and the sequence count is not bound by grid axis 1's 65535."""
    n_d = tl.cdiv(D, BD)
    pid = tl.program_id(0)
    return (pid // n_d).to(tl.int64), pid % n_d


@triton.jit
def selective_transition(delta_A, min_eigenvalue):
    """Mamba's decay with signed eigenvalues, elementwise: (e, a) with e = exp(delta A) and
    a = min_eigenvalue + (1 - min_eigenvalue) e (exactly e at min_eigenvalue = 0, the original Mamba). The backward
    needs e itself; a forward that does not is compiled without it."""
    e = tl.exp(delta_A)
    return e, min_eigenvalue + (1.0 - min_eigenvalue) * e


@triton.jit
def selective_program_inputs(
    A_ptr, D_ptr, s_ptr, i_b, off_dn, m_dn, o_d, m_d, Dm, N,
    BDm: tl.constexpr, BN: tl.constexpr, USE_D: tl.constexpr, USE_S: tl.constexpr,
):  # fmt: skip
    """What a selective-scan program loads once for its (sequence i_b, channels o_d): A [BDm, BN] (0 on padding
    lanes, so a = 1 there: the identity), D [BDm] (zeros without USE_D) and the [BDm, BN] fp32 state it starts from,
    read at ``s_ptr`` [Bt, Dm, N] (the initial state forward, the final-state gradient backward; zeros without
    USE_S)."""
    A = tl.load(A_ptr + off_dn, mask=m_dn, other=0.0).to(tl.float32)
    if USE_D:
        Dv = tl.load(D_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)
    else:
        Dv = tl.zeros([BDm], dtype=tl.float32)
    if USE_S:
        s = tl.load(s_ptr + i_b * Dm * N + off_dn, mask=m_dn, other=0.0).to(tl.float32)
    else:
        s = tl.zeros([BDm, BN], dtype=tl.float32)
    return A, Dv, s
