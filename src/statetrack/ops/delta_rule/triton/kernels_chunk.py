"""Chunk-parallel Triton kernels of the (gated, multi-Householder) delta rule. Launch code and math: ``chunk.py``.

Only ``@triton.jit`` code (see ``statetrack/ops/_triton.py``). Layout (after ``inputs.normalize``): q [N, T, H, K],
k [N, T, n_h, H, K], v [N, T, n_h, H, V], beta [N, T, n_h, H], log-decay g [N, T, H]. Read as [N, T * n_h, H, .],
k, v and beta form one sequence of sub-steps (NH per token). A chunk is C tokens = L = C * NH sub-steps (padded to
BL rows, a power of two) and C queries (padded to BC rows); the gate acts at the first sub-step of its token and
query i reads the state after sub-step last(i) = i * NH + NH - 1. Padded rows load k = v = beta = 0, which
decouples them: their rows and columns of A are zero, so their rows of T = (I + A)^-1 are unit rows.

Buffers between kernels, fp32 (the state algebra and the inverse are kept in fp32) but for hs and dhs with PREC
"bf16", which stores them in bf16 (every product that reads them rounds them to bf16 anyway):
  gc [N, T * NH, H]      cumulative log-gate within the chunk, per sub-step (gated only)
  Ti [N, NC, H, BL, BL]  the inverse T of each chunk (backward only)
  w  [N, T, NH, H, K]    T diag(beta * exp(gc)) K;  u [N, T, NH, H, V] = T diag(beta) V, overwritten by
                         v_new = u - w S0 (the corrected values) in the state pass
  hs [N, NC + 1, H, K, V] state at the start of every chunk, and the final state in slot NC
  dhs [N, NC, H, K, V]   first scale Q^T diag(exp gq) dO of chunk c (prep), then dLoss / d(state at the end of
                         chunk c) (state_bwd reads the one and writes the other)
  dvl [N, T, NH, H, V]   dLoss / d v_new: the chunk-local part scale P^T dO, completed in place by the dS pass

Kernels: ``prep`` (grid over chunks: gc, T, w, u and in the backward also dvl), ``state_fwd`` and ``state_bwd``
(sequential over chunks, grid over V-block x sequence x head), ``out`` (grid over V-blocks x chunks) and ``grad``
(grid over chunks). Names: b_* register tiles, o_* index vectors, m_* masks, r_* row indices into the
[N * T * NH, H] sub-step axis. The state passes keep the state as up to four [BK, BV] row blocks of K (BK <= 64),
so that no tile grows with K; loops over the blocks are unrolled (``tl.static_range``), and ``_blk_of`` /
``_with_blk`` read and replace block j at a compile-time j. Their chunk loop bound is NC_I under the interpreter
(``ops._triton.loop_bound``) and the run-time NC when compiled.

PREC, the precision of the products that involve fp32 tiles: "tf32x3", "ieee" or "tf32" (tl.dot of fp32 tiles at
that input_precision), or "bf16" (bf16 tensor-core passes with fp32 accumulation: ``_dot32`` / ``_mm`` take one
pass, or with PRECISE the split ``_dot16x3``, as the inverse does), which the interpreter gets as
"bf16_emulated" (``_bf16``). Which products are PRECISE was measured: docs/kernels.md, "The bf16 precision".
"""

import triton
import triton.language as tl

from .tiles import load_tile as _ld
from .tiles import seq_head
from .tiles import store_tile as _st


@triton.jit
def _unit_lower_inverse(b_A, BL: tl.constexpr, BS: tl.constexpr, LOG_NB: tl.constexpr, PREC: tl.constexpr):
    """(I + A)^{-1} in fp32 for a strictly lower-triangular A [BL, BL].

    1. Forward substitution inside the BS x BS diagonal blocks, all BL / BS blocks at once: step i computes row i
       of every block (the rows sit in disjoint column ranges, so one reduction over the rows serves them all).
    2. With D = blockdiag inverse and N = D A_off (strictly block-lower, N^NB = 0):
       (I + A)^{-1} = (I + N)^{-1} D = prod_j (I + (-N)^(2^j)) D, a terminating product of log2(NB) factors whose
       terms are exactly those of block forward substitution.
    The products run at PREC; for PREC "bf16" as the hi/lo split ``_dot16x3`` (``_mm`` PRECISE): in one bf16 pass
    each they put errors of 1e-2 into o and every gradient at beta near 2, T = 512; split (16 significant bits)
    they move only the final state's error with repeated keys (1.1e-4 at tf32x3 -> 7e-4 to 1.1e-3), and tf32x3
    made the prep kernel spill 1 KB a thread on sm_90 (docs/kernels.md, "The bf16 precision").
    """
    o_r = tl.arange(0, BL)
    blk = o_r // BS
    same = blk[:, None] == blk[None, :]
    eye = tl.where(o_r[:, None] == o_r[None, :], 1.0, 0.0)
    b_Ad = tl.where(same, b_A, 0.0)
    b_D = eye
    for i in range(1, BS):  # a run-time loop: unrolled, it multiplies compile time
        sel = (o_r % BS) == i
        b_a = tl.sum(tl.where(sel[:, None], b_Ad, 0.0), 0)
        b_t = -tl.sum(b_a[:, None] * b_D, 0)
        b_D = tl.where(sel[:, None] & same, b_t[None, :] + eye, b_D)
    if LOG_NB > 0:
        b_M = -_mm(b_D, tl.where(blk[:, None] > blk[None, :], b_A, 0.0), PREC, True)
        b_P = eye + b_M
        for _ in tl.static_range(1, LOG_NB):
            b_M = _mm(b_M, b_M, PREC, True)
            b_P = b_P + _mm(b_P, b_M, PREC, True)
        b_D = _mm(b_P, b_D, PREC, True)
    return b_D


@triton.jit
def _rows(c, T, n64, i_h, H: tl.constexpr, NH: tl.constexpr, C: tl.constexpr, BL: tl.constexpr, BC: tl.constexpr):
    """Row indices and masks of chunk c: sub-steps (r_r, m_r) and queries (r_q into [N * T, H], m_q)."""
    L: tl.constexpr = C * NH
    o_r = tl.arange(0, BL)
    o_i = tl.arange(0, BC)
    s_r = c * L + o_r
    m_r = (o_r < L) & (s_r < T * NH)
    t_q = c * C + o_i
    m_q = (o_i < C) & (t_q < T)
    r_r = (n64 * T * NH + s_r) * H + i_h
    r_q = (n64 * T + t_q) * H + i_h
    return r_r, m_r, r_q, m_q


@triton.jit
def _chunk_program(T, H: tl.constexpr, NH: tl.constexpr, C: tl.constexpr, BL: tl.constexpr, BC: tl.constexpr):
    """A program on a (NC, N * H) grid: (its chunk c, NC, sequence as int64, head, and the chunk's rows as
    ``_rows`` gives them)."""
    c = tl.program_id(0)
    n64, i_h = seq_head(1, H)
    r_r, m_r, r_q, m_q = _rows(c, T, n64, i_h, H, NH, C, BL, BC)
    return c, tl.num_programs(0), n64, i_h, r_r, m_r, r_q, m_q


@triton.jit
def _gates(gc_ptr, c, T, n64, i_h, H: tl.constexpr, NH: tl.constexpr, C: tl.constexpr, BL: tl.constexpr,
           BC: tl.constexpr, USE_G: tl.constexpr):  # fmt: skip
    """Cumulative log-gates of chunk c: per sub-step [BL], per query [BC], at the chunk's end (scalar); zeros
    without a gate. Padded rows get the end value, so every exponent exp(g_a - g_b) the kernels take with a after
    b is <= 0."""
    if USE_G:
        L: tl.constexpr = C * NH
        o_r = tl.arange(0, BL)
        o_i = tl.arange(0, BC)
        base = n64 * T * NH
        s_r = c * L + o_r
        m_r = (o_r < L) & (s_r < T * NH)
        s_q = c * L + o_i * NH + (NH - 1)
        m_q = (o_i < C) & (s_q < T * NH)
        s_last = tl.minimum(c * L + L, T * NH) - 1
        b_gl = tl.load(gc_ptr + (base + s_last) * H + i_h)
        b_g = tl.load(gc_ptr + (base + s_r) * H + i_h, mask=m_r, other=0.0)
        b_gq = tl.load(gc_ptr + (base + s_q) * H + i_h, mask=m_q, other=0.0)
        b_g = tl.where(m_r, b_g, b_gl)
        b_gq = tl.where(m_q, b_gq, b_gl)
    else:
        b_g = tl.zeros([BL], dtype=tl.float32)
        b_gq = tl.zeros([BC], dtype=tl.float32)
        b_gl = 0.0
    return b_g, b_gq, b_gl


@triton.jit
def _masks(b_g, b_gq, NH: tl.constexpr, BL: tl.constexpr, BC: tl.constexpr, USE_G: tl.constexpr):
    """Decayed masks: E [BL, BL] = exp(g_r - g_s) for s < r (the WY matrix A) and Eq [BC, BL] = exp(gq_i - g_s)
    for s <= last(i) (the intra-chunk scores); zero elsewhere."""
    o_r = tl.arange(0, BL)
    o_i = tl.arange(0, BC)
    strict = o_r[None, :] < o_r[:, None]
    causal = o_r[None, :] <= (o_i * NH + (NH - 1))[:, None]
    if USE_G:
        # where() after exp: the masked-out exponents may be positive (even inf), and are discarded, not multiplied
        b_E = tl.where(strict, tl.exp(b_g[:, None] - b_g[None, :]), 0.0)
        b_Eq = tl.where(causal, tl.exp(b_gq[:, None] - b_g[None, :]), 0.0)
    else:
        b_E = tl.where(strict, 1.0, 0.0)
        b_Eq = tl.where(causal, 1.0, 0.0)
    return b_E, b_Eq


@triton.jit
def _in(x, IN_CAST: tl.constexpr):
    """An input tile for a product of two inputs: as loaded, or fp32 under the interpreter (IN_CAST), which keeps
    bf16 as raw bits that its matmul cannot read."""
    if IN_CAST:
        x = x.to(tl.float32)
    return x


@triton.jit
def _in_dot_t(a, b, acc, IN_PREC: tl.constexpr, IN_CAST: tl.constexpr):
    """acc + a b^T for two input tiles, multiplied in their own dtype (exact products for bf16/fp16)."""
    return acc + tl.dot(_in(a, IN_CAST), tl.trans(_in(b, IN_CAST)), input_precision=IN_PREC)


@triton.jit
def _bf16(x, PREC: tl.constexpr):
    """x rounded to bf16 (to nearest, ties to even, as the GPU converts) for a bf16 product: a bf16 tile when
    compiled; under the interpreter (PREC "bf16_emulated"), whose bf16 tiles are raw bits that its matmul cannot
    read, the same values in an fp32 tile (products of bf16 values are exact in fp32, so an fp32 dot of them sums
    what the tensor cores sum)."""
    if PREC == "bf16_emulated":
        b = x.to(tl.float32).to(tl.uint32, bitcast=True)
        b = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000
        x = b.to(tl.float32, bitcast=True)
    else:
        x = x.to(tl.bfloat16)
    return x


@triton.jit
def _dot16(a, b, acc, PREC: tl.constexpr):
    """acc + a @ b in one bf16 tensor-core pass: both operands rounded to bf16, fp32 sums (acc fp32 or None)."""
    return tl.dot(_bf16(a, PREC), _bf16(b, PREC), acc)


@triton.jit
def _dot16x3(a, b, acc, PREC: tl.constexpr):
    """acc + a @ b to about fp32 accuracy in bf16 tensor-core passes: each operand as hi + lo, two bf16 parts
    (16 significant bits), and hi_a hi_b + hi_a lo_b + lo_a hi_b (the dropped lo_a lo_b is ~2^-16 of a term).
    A bf16 tile is exact (lo = 0) and its pass is skipped: an input tile times an fp32 tile takes two passes.
    Written as plain bf16 dots: triton's input_precision="bf16x3" reads shared memory out of bounds on sm_90."""
    a_hi = _bf16(a, PREC)
    b_hi = _bf16(b, PREC)
    r = tl.dot(a_hi, b_hi, acc)
    if b.dtype != tl.bfloat16:
        r = tl.dot(a_hi, _bf16(b.to(tl.float32) - b_hi.to(tl.float32), PREC), r)
    if a.dtype != tl.bfloat16:
        r = tl.dot(_bf16(a.to(tl.float32) - a_hi.to(tl.float32), PREC), b_hi, r)
    return r


@triton.jit
def _dot32(a, b, acc, PREC: tl.constexpr, PRECISE: tl.constexpr):
    """acc + a @ b for tiles of any dtype (inputs as loaded, fp32 tiles): one fp32 product at PREC; for PREC
    "bf16" ``_dot16x3`` if PRECISE (a product that the state recursion or an ill-conditioned term needs to fp32
    accuracy), else ``_dot16``."""
    if PREC == "bf16" or PREC == "bf16_emulated":
        if PRECISE:
            r = _dot16x3(a, b, acc, PREC)
        else:
            r = _dot16(a, b, acc, PREC)
    else:
        r = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision=PREC)
    return r


@triton.jit
def _mm(a, b, PREC: tl.constexpr, PRECISE: tl.constexpr):
    """a @ b as ``_dot32`` computes it, without an accumulator."""
    return _dot32(a, b, None, PREC, PRECISE)


@triton.jit
def _as_input(x, ptr, PREC: tl.constexpr):
    """x, an fp32 tile of the input at ptr, back in the input's dtype for a bf16 product (a bf16 tile is exact in
    one pass: ``_dot16x3`` skips its lo); as given for the fp32 precisions."""
    if PREC == "bf16" or PREC == "bf16_emulated":
        x = x.to(ptr.dtype.element_ty)
    return x


@triton.jit
def _for_buffer(x, ptr, PREC: tl.constexpr):
    """x as a store into ptr's buffer should write it: rounded to the nearest bf16 for a bf16 buffer (compiled,
    the store's conversion does that; under the interpreter it truncates, so the rounding is done here)."""
    if ptr.dtype.element_ty == tl.bfloat16:
        x = _bf16(x, PREC)
    return x


@triton.jit
def _blk(ptr, r_x, m_x, j, K: tl.constexpr, BK: tl.constexpr):
    """K-block j of the rows r_x of a [rows, H, K] tensor, in its own dtype: [len(r_x), BK]."""
    o_k = j * BK + tl.arange(0, BK)
    p = ptr + r_x[:, None] * K + o_k[None, :]
    return tl.load(p, mask=m_x[:, None] & (o_k < K)[None, :], other=0.0)


@triton.jit
def _blkT(ptr, r_x, m_x, j, K: tl.constexpr, BK: tl.constexpr):
    """The transpose of ``_blk``: [BK, len(r_x)], loaded transposed (no register shuffle)."""
    o_k = j * BK + tl.arange(0, BK)
    p = ptr + r_x[None, :] * K + o_k[:, None]
    return tl.load(p, mask=(o_k < K)[:, None] & m_x[None, :], other=0.0)


@triton.jit
def _apply_T(src_ptr, dst_ptr, r_r, m_r, b_T, b_s, D: tl.constexpr, BD: tl.constexpr, PREC: tl.constexpr):
    """dst rows = T diag(s) (src rows) for a [rows, H, D] input and an fp32 [rows, H, D] buffer, D in BD blocks.
    PREC "bf16": ``_dot16x3`` (w and u set the state recursion) of (T diag(s)) and the rows as loaded, which bf16
    inputs hold exactly (one pass less)."""
    ND: tl.constexpr = (D + BD - 1) // BD
    for i_d in range(ND):
        o_d = i_d * BD + tl.arange(0, BD)
        m_d = o_d < D
        if PREC == "bf16" or PREC == "bf16_emulated":
            b_y = _dot16x3(b_T * b_s[None, :], _blk(src_ptr, r_r, m_r, i_d, D, BD), None, PREC)
        else:
            b_x = b_s[:, None] * _ld(src_ptr, 0, r_r, m_r, D, o_d, m_d)
            b_y = tl.dot(b_T, b_x, input_precision=PREC)
        _st(dst_ptr, 0, r_r, m_r, D, o_d, m_d, b_y)


@triton.jit(do_not_specialize=["T"])
def chunk_prep_kernel(
    q_ptr, k_ptr, v_ptr, beta_ptr, g_ptr, do_ptr, gc_ptr, ti_ptr, w_ptr, u_ptr, dvl_ptr, qdo_ptr, scale, T,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, NH: tl.constexpr, C: tl.constexpr, BL: tl.constexpr,
    BC: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BS: tl.constexpr, LOG_NB: tl.constexpr,
    USE_G: tl.constexpr, BWD: tl.constexpr, PREC: tl.constexpr, IN_PREC: tl.constexpr, IN_CAST: tl.constexpr,
):  # fmt: skip
    """Grid (NC, N * H): everything of a chunk that does not depend on the state.

    gc = within-chunk cumsum of the log-gates; A = strict(diag(beta) (K K^T * E)); T = (I + A)^{-1} (fp32, one
    [BL, BL] tile); w = T diag(beta * exp(gc)) K; u = T diag(beta) V. BWD (the backward's recompute) also stores T
    and the chunk-local parts of the gradients the state pass needs: dLoss/dv_new, dvl = scale P^T dO with
    P = (Q K^T) * Eq, and dLoss/dS0 through o, scale Q^T diag(exp gq) dO [K, V] per chunk, into qdo (the dhs
    buffer, which the state pass reads and then overwrites).
    """
    c, NC, n64, i_h, r_r, m_r, r_q, m_q = _chunk_program(T, H, NH, C, BL, BC)
    NK: tl.constexpr = (K + BK - 1) // BK
    NV: tl.constexpr = (V + BV - 1) // BV
    o_r = tl.arange(0, BL)
    o_i = tl.arange(0, BC)
    o_k = tl.arange(0, BK)

    b_b = tl.load(beta_ptr + r_r, mask=m_r, other=0.0).to(tl.float32)
    if USE_G:
        m_first = m_r & ((o_r % NH) == 0)
        r_tok = (n64 * T + (c * C + o_r // NH)) * H + i_h
        b_g = tl.cumsum(tl.load(g_ptr + r_tok, mask=m_first, other=0.0).to(tl.float32), 0)
        tl.store(gc_ptr + r_r, b_g, mask=m_r)
        b_gq = tl.sum(tl.where(o_r[None, :] == (o_i * NH + (NH - 1))[:, None], b_g[None, :], 0.0), 1)
        b_bw = b_b * tl.exp(b_g)
    else:
        b_g = tl.zeros([BL], dtype=tl.float32)
        b_gq = tl.zeros([BC], dtype=tl.float32)
        b_bw = b_b
    b_E, b_Eq = _masks(b_g, b_gq, NH, BL, BC, USE_G)

    b_kk = tl.zeros([BL, BL], dtype=tl.float32)
    for i_k in range(NK):
        b_k = _blk(k_ptr, r_r, m_r, i_k, K, BK)
        b_kk = _in_dot_t(b_k, b_k, b_kk, IN_PREC, IN_CAST)
    b_T = _unit_lower_inverse(b_b[:, None] * b_kk * b_E, BL, BS, LOG_NB, PREC)
    if BWD:
        p_ti = ti_ptr + ((n64 * NC + c) * H + i_h) * BL * BL + o_r[:, None] * BL + o_r[None, :]
        tl.store(p_ti, b_T)
    _apply_T(k_ptr, w_ptr, r_r, m_r, b_T, b_bw, K, BK, PREC)
    _apply_T(v_ptr, u_ptr, r_r, m_r, b_T, b_b, V, BV, PREC)

    if BWD:
        b_qk = tl.zeros([BC, BL], dtype=tl.float32)
        for i_k in range(NK):
            b_qk = _in_dot_t(_blk(q_ptr, r_q, m_q, i_k, K, BK), _blk(k_ptr, r_r, m_r, i_k, K, BK), b_qk, IN_PREC,
                             IN_CAST)  # fmt: skip
        b_Pt = tl.trans(b_qk * b_Eq * scale)
        p_qdo = ((n64 * NC + c) * H + i_h) * K * V
        for i_v in range(NV):
            o_v = i_v * BV + tl.arange(0, BV)
            m_v = o_v < V
            b_do = _blk(do_ptr, r_q, m_q, i_v, V, BV)
            b_dvl = _dot32(b_Pt, b_do, tl.zeros([BL, BV], tl.float32), PREC, True)
            _st(dvl_ptr, 0, r_r, m_r, V, o_v, m_v, b_dvl)
            if USE_G:
                b_dos = b_do.to(tl.float32) * (scale * tl.exp(b_gq))[:, None]
            else:
                b_dos = b_do
            for i_k in range(NK):
                b_qdo = _qdo(q_ptr, r_q, m_q, i_k, b_dos, scale, K, BK, BV, USE_G, PREC, IN_PREC, IN_CAST)
                b_qdo = _for_buffer(b_qdo, qdo_ptr, PREC)
                _st(qdo_ptr, p_qdo, i_k * BK + o_k, i_k * BK + o_k < K, V, o_v, m_v, b_qdo)


@triton.jit
def _qdo(q_ptr, r_q, m_q, j, b_dos, scale, K: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
         USE_G: tl.constexpr, PREC: tl.constexpr, IN_PREC: tl.constexpr, IN_CAST: tl.constexpr):  # fmt: skip
    """Row block j of scale Q^T diag(exp gq) dO [BK, BV]. b_dos: dO as loaded (no gate: a product of two inputs,
    in their dtype on the tensor cores), or fp32 dO * scale exp(gq) (gate: an fp32 product)."""
    b_qt = _blkT(q_ptr, r_q, m_q, j, K, BK)
    if USE_G:
        b_r = _dot32(b_qt, b_dos, tl.zeros([BK, BV], tl.float32), PREC, False)
    else:
        b_r = scale * tl.dot(_in(b_qt, IN_CAST), _in(b_dos, IN_CAST), input_precision=IN_PREC)
    return b_r


@triton.jit
def _blk_of(j: tl.constexpr, b_1, b_2, b_3, b_4):
    """Row block j (a compile-time index) of a state held as four [BK, BV] row blocks."""
    return b_1 if j == 0 else (b_2 if j == 1 else (b_3 if j == 2 else b_4))


@triton.jit
def _with_blk(j: tl.constexpr, b, b_1, b_2, b_3, b_4):
    """The four row blocks with block j (a compile-time index) replaced by b."""
    return (b if j == 0 else b_1), (b if j == 1 else b_2), (b if j == 2 else b_3), (b if j == 3 else b_4)


@triton.jit
def _ld_state(ptr, base, o_v, m_v, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
              NK: tl.constexpr, LOAD: tl.constexpr):  # fmt: skip
    """A [K, BV] slice of a state as four [BK, BV] row blocks (those past K, and all without LOAD, are zeros)."""
    b_1 = tl.zeros([BK, BV], dtype=tl.float32)
    b_2 = tl.zeros_like(b_1)
    b_3 = tl.zeros_like(b_1)
    b_4 = tl.zeros_like(b_1)
    if LOAD:
        for j in tl.static_range(NK):
            o_k = j * BK + tl.arange(0, BK)
            b_1, b_2, b_3, b_4 = _with_blk(j, _ld(ptr, base, o_k, o_k < K, V, o_v, m_v), b_1, b_2, b_3, b_4)
    return b_1, b_2, b_3, b_4


@triton.jit
def _st_state(ptr, base, b_1, b_2, b_3, b_4, o_v, m_v, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr,
              NK: tl.constexpr, PREC: tl.constexpr):  # fmt: skip
    for j in tl.static_range(NK):
        o_k = j * BK + tl.arange(0, BK)
        _st(ptr, base, o_k, o_k < K, V, o_v, m_v, _for_buffer(_blk_of(j, b_1, b_2, b_3, b_4), ptr, PREC))


@triton.jit
def _state_pass_start(ptr, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                      NK: tl.constexpr, LOAD: tl.constexpr):  # fmt: skip
    """Indices of a state-pass program (grid (cdiv(V, BV), N * H)) and the [K, BV] slice it starts from: of
    ``ptr`` [N, H, K, V] with LOAD, else zeros. Returns (n64, i_h, o_v, m_v, offset of the slice, 4 row blocks)."""
    o_v = tl.program_id(0) * BV + tl.arange(0, BV)
    m_v = o_v < V
    n64, i_h = seq_head(1, H)
    p_h = (n64 * H + i_h) * K * V
    b_1, b_2, b_3, b_4 = _ld_state(ptr, p_h, o_v, m_v, K, V, BK, BV, NK, LOAD)
    return n64, i_h, o_v, m_v, p_h, b_1, b_2, b_3, b_4


@triton.jit
def _rows_times_state(x_ptr, r_r, m_r, b_1, b_2, b_3, b_4, K: tl.constexpr, BL: tl.constexpr, BK: tl.constexpr,
                      BV: tl.constexpr, NK: tl.constexpr, PREC: tl.constexpr):  # fmt: skip
    """X S [BL, BV] for the rows r_r of a [rows, H, K] tensor X and the state's four row blocks (fp32 products,
    PRECISE: those of the state recursion)."""
    b_x = tl.zeros([BL, BV], dtype=tl.float32)
    for j in tl.static_range(NK):
        b_x = _dot32(_blk(x_ptr, r_r, m_r, j, K, BK), _blk_of(j, b_1, b_2, b_3, b_4), b_x, PREC, True)
    return b_x


@triton.jit
def _decay_to_chunk_end(b_x, b_1, b_2, b_3, b_4, gc_ptr, c, T, n64, i_h, H: tl.constexpr, NH: tl.constexpr,
                        C: tl.constexpr, BL: tl.constexpr, NK: tl.constexpr, USE_G: tl.constexpr):  # fmt: skip
    """With a gate: row r of b_x [BL, BV] times exp(g_L - g_r) (what a write at sub-step r is worth at the chunk's
    end) and the state's row blocks times exp(g_L). Without: all as given."""
    if USE_G:
        b_g, _, b_gl = _gates(gc_ptr, c, T, n64, i_h, H, NH, C, BL, 16, USE_G)
        b_x = b_x * tl.exp(b_gl - b_g)[:, None]
        b_dec = tl.exp(b_gl)
        for j in tl.static_range(NK):
            b_1, b_2, b_3, b_4 = _with_blk(j, _blk_of(j, b_1, b_2, b_3, b_4) * b_dec, b_1, b_2, b_3, b_4)
    return b_x, b_1, b_2, b_3, b_4


@triton.jit
def _state_fwd_step(c, b_h1, b_h2, b_h3, b_h4, k_ptr, w_ptr, u_ptr, gc_ptr, hs_ptr, n64, i_h, o_v, m_v, T, NC,
                    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, NH: tl.constexpr, C: tl.constexpr,
                    BL: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, NK: tl.constexpr, USE_G: tl.constexpr,
                    PREC: tl.constexpr):  # fmt: skip
    """One chunk: store S0, v_new = u - W S0 (in place of u), S1 = exp(g_L) S0 + (diag(d) K)^T v_new."""
    r_r, m_r, _, _ = _rows(c, T, n64, i_h, H, NH, C, BL, 16)
    p_hs = ((n64 * (NC + 1) + c) * H + i_h) * K * V
    _st_state(hs_ptr, p_hs, b_h1, b_h2, b_h3, b_h4, o_v, m_v, K, V, BK, NK, PREC)
    b_u = _ld(u_ptr, 0, r_r, m_r, V, o_v, m_v) - _rows_times_state(w_ptr, r_r, m_r, b_h1, b_h2, b_h3, b_h4, K, BL,
                                                                    BK, BV, NK, PREC)  # fmt: skip
    _st(u_ptr, 0, r_r, m_r, V, o_v, m_v, b_u)
    b_u, b_h1, b_h2, b_h3, b_h4 = _decay_to_chunk_end(b_u, b_h1, b_h2, b_h3, b_h4, gc_ptr, c, T, n64, i_h, H, NH, C,
                                                      BL, NK, USE_G)  # fmt: skip
    for j in tl.static_range(NK):
        b_h = _dot32(_blkT(k_ptr, r_r, m_r, j, K, BK), b_u, _blk_of(j, b_h1, b_h2, b_h3, b_h4), PREC, True)
        b_h1, b_h2, b_h3, b_h4 = _with_blk(j, b_h, b_h1, b_h2, b_h3, b_h4)
    return b_h1, b_h2, b_h3, b_h4


@triton.jit(do_not_specialize=["T", "NC"])
def chunk_state_fwd_kernel(
    k_ptr, w_ptr, u_ptr, gc_ptr, h0_ptr, hs_ptr, ht_ptr, T, NC, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    NH: tl.constexpr, C: tl.constexpr, BL: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, USE_G: tl.constexpr,
    USE_H0: tl.constexpr, STORE_HT: tl.constexpr, NC_I: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Grid (cdiv(V, BV), N * H); walks the chunks in order with the fp32 state slice [K, BV] in registers.
    Stores hs (slots 0 .. NC) and v_new (over u); the final state also into ht if STORE_HT."""
    NK: tl.constexpr = (K + BK - 1) // BK
    n64, i_h, o_v, m_v, p_h, b_h1, b_h2, b_h3, b_h4 = _state_pass_start(h0_ptr, H, K, V, BK, BV, NK, USE_H0)
    for c in range(NC_I if NC_I > 0 else NC):
        b_h1, b_h2, b_h3, b_h4 = _state_fwd_step(
            c, b_h1, b_h2, b_h3, b_h4, k_ptr, w_ptr, u_ptr, gc_ptr, hs_ptr, n64, i_h, o_v, m_v, T, NC,
            H, K, V, NH, C, BL, BK, BV, NK, USE_G, PREC,
        )  # fmt: skip
    p_hs = ((n64 * (NC + 1) + NC) * H + i_h) * K * V
    _st_state(hs_ptr, p_hs, b_h1, b_h2, b_h3, b_h4, o_v, m_v, K, V, BK, NK, PREC)
    if STORE_HT:
        _st_state(ht_ptr, p_h, b_h1, b_h2, b_h3, b_h4, o_v, m_v, K, V, BK, NK, PREC)


@triton.jit(do_not_specialize=["T"])
def chunk_out_kernel(
    q_ptr, k_ptr, vn_ptr, gc_ptr, hs_ptr, o_ptr, scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    NH: tl.constexpr, C: tl.constexpr, BL: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    USE_G: tl.constexpr, PREC: tl.constexpr, IN_PREC: tl.constexpr, IN_CAST: tl.constexpr,
):  # fmt: skip
    """Grid (cdiv(V, BV), NC, N * H): o = scale (diag(exp gq) Q S0 + (Q K^T * Eq) v_new) for one chunk."""
    c = tl.program_id(1)
    NC = tl.num_programs(1)
    n64, i_h = seq_head(2, H)
    NK: tl.constexpr = (K + BK - 1) // BK
    r_r, m_r, r_q, m_q = _rows(c, T, n64, i_h, H, NH, C, BL, BC)
    o_k = tl.arange(0, BK)
    o_v = tl.program_id(0) * BV + tl.arange(0, BV)
    m_v = o_v < V
    p_hs = ((n64 * (NC + 1) + c) * H + i_h) * K * V
    b_o = tl.zeros([BC, BV], dtype=tl.float32)
    b_qk = tl.zeros([BC, BL], dtype=tl.float32)
    for i_k in range(NK):
        b_q = _blk(q_ptr, r_q, m_q, i_k, K, BK)
        b_h = _ld(hs_ptr, p_hs, i_k * BK + o_k, i_k * BK + o_k < K, V, o_v, m_v)
        b_o = _dot32(b_q, b_h, b_o, PREC, False)
        b_qk = _in_dot_t(b_q, _blk(k_ptr, r_r, m_r, i_k, K, BK), b_qk, IN_PREC, IN_CAST)
    b_g, b_gq, _ = _gates(gc_ptr, c, T, n64, i_h, H, NH, C, BL, BC, USE_G)
    if USE_G:
        b_o = b_o * tl.exp(b_gq)[:, None]
    _, b_Eq = _masks(b_g, b_gq, NH, BL, BC, USE_G)
    b_vn = _ld(vn_ptr, 0, r_r, m_r, V, o_v, m_v)
    b_o = scale * (b_o + _mm(b_qk * b_Eq, b_vn, PREC, True))
    _st(o_ptr, 0, r_q, m_q, V, o_v, m_v, b_o)


@triton.jit
def _state_bwd_step(c, b_d1, b_d2, b_d3, b_d4, k_ptr, w_ptr, gc_ptr, dvl_ptr, dhs_ptr, n64, i_h, o_v, m_v, T, NC,
                    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, NH: tl.constexpr, C: tl.constexpr,
                    BL: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, NK: tl.constexpr, USE_G: tl.constexpr,
                    PREC: tl.constexpr):  # fmt: skip
    """One chunk, walking back with dS = dLoss/d(state at the chunk's end): store dS (over the chunk's
    scale Q^T diag(exp gq) dO, read first); complete dv_new = dvl + diag(d) K dS (in place); return
    dS0 = exp(g_L) dS + scale Q^T diag(exp gq) dO - W^T dv_new."""
    r_r, m_r, _, _ = _rows(c, T, n64, i_h, H, NH, C, BL, 16)
    p_dhs = ((n64 * NC + c) * H + i_h) * K * V
    b_q1, b_q2, b_q3, b_q4 = _ld_state(dhs_ptr, p_dhs, o_v, m_v, K, V, BK, BV, NK, True)  # scale Q^T diag(..) dO
    _st_state(dhs_ptr, p_dhs, b_d1, b_d2, b_d3, b_d4, o_v, m_v, K, V, BK, NK, PREC)
    b_x = _rows_times_state(k_ptr, r_r, m_r, b_d1, b_d2, b_d3, b_d4, K, BL, BK, BV, NK, PREC)
    b_x, b_d1, b_d2, b_d3, b_d4 = _decay_to_chunk_end(b_x, b_d1, b_d2, b_d3, b_d4, gc_ptr, c, T, n64, i_h, H, NH, C,
                                                      BL, NK, USE_G)  # fmt: skip
    b_dv = _ld(dvl_ptr, 0, r_r, m_r, V, o_v, m_v) + b_x
    _st(dvl_ptr, 0, r_r, m_r, V, o_v, m_v, b_dv)
    for j in tl.static_range(NK):
        b_d = _blk_of(j, b_d1, b_d2, b_d3, b_d4) + _blk_of(j, b_q1, b_q2, b_q3, b_q4)
        b_d -= _mm(_blkT(w_ptr, r_r, m_r, j, K, BK), b_dv, PREC, True)
        b_d1, b_d2, b_d3, b_d4 = _with_blk(j, b_d, b_d1, b_d2, b_d3, b_d4)
    return b_d1, b_d2, b_d3, b_d4


@triton.jit(do_not_specialize=["T", "NC"])
def chunk_state_bwd_kernel(
    k_ptr, w_ptr, gc_ptr, dht_ptr, dvl_ptr, dhs_ptr, dh0_ptr, T, NC, H: tl.constexpr, K: tl.constexpr,
    V: tl.constexpr, NH: tl.constexpr, C: tl.constexpr, BL: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    USE_G: tl.constexpr, USE_DHT: tl.constexpr, STORE_DH0: tl.constexpr, NC_I: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Grid (cdiv(V, BV), N * H); walks the chunks from the last with dS [K, BV] (fp32) in registers.
    Stores dhs, completes dv_new in dvl, and stores dh0 = dS at the start if STORE_DH0."""
    NK: tl.constexpr = (K + BK - 1) // BK
    n64, i_h, o_v, m_v, p_h, b_d1, b_d2, b_d3, b_d4 = _state_pass_start(dht_ptr, H, K, V, BK, BV, NK, USE_DHT)
    for cc in range(NC_I if NC_I > 0 else NC):
        b_d1, b_d2, b_d3, b_d4 = _state_bwd_step(
            NC - 1 - cc, b_d1, b_d2, b_d3, b_d4, k_ptr, w_ptr, gc_ptr, dvl_ptr, dhs_ptr, n64, i_h, o_v, m_v, T, NC,
            H, K, V, NH, C, BL, BK, BV, NK, USE_G, PREC,
        )  # fmt: skip
    if STORE_DH0:
        _st_state(dh0_ptr, p_h, b_d1, b_d2, b_d3, b_d4, o_v, m_v, K, V, BK, NK, PREC)


@triton.jit(do_not_specialize=["T"])
def chunk_grad_kernel(
    q_ptr, k_ptr, v_ptr, beta_ptr, gc_ptr, ti_ptr, hs_ptr, dhs_ptr, vn_ptr, dvn_ptr, do_ptr, dq_ptr, dk_ptr, dv_ptr,
    db_ptr, dg_ptr, scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, NH: tl.constexpr, C: tl.constexpr,
    BL: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, USE_G: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Grid (NC, N * H): dq, dk, dv, dbeta (and dlog_decay) of one chunk, from S0 = hs[c], dS = dhs[c] (at the
    chunk's end), v_new and dU = dLoss/dv_new. With X = K S0 and R = diag(beta) (V - Gamma X), v_new = T R:
      dR = T^T dU, dv = diag(beta) dR, dA = -strict(dR v_new^T), dP = scale dO v_new^T (masked by Eq),
      Y = dR S0^T = T^T (dU S0^T), dq = (dP * Eq) K + scale diag(exp gq) dO S0^T,
      dk = -diag(beta Gamma) Y + (B + B^T) K + (dP * Eq)^T Q + diag(d) v_new dS^T,  B = diag(beta) (dA * E),
      dbeta = rowsum(dR * V) - Gamma rowsum(K * Y) + rowsum(dA * E * K K^T).
    The gate needs no terms of its own: scaling exp(g_t) scales the state before token t, as scaling the chunk's
    start state and every v before t would, less those tokens' outputs; so within a chunk
    dlog_decay_t = <S1, dS> - sum_{t' >= t} (sum_j v_t'j . dv_t'j - q_t' . dq_t'), with S1 the next chunk's start
    state: from S1 = exp(g_L) S0 + (diag(d) K)^T v_new, <S1, dS> = exp(g_L) <S0, dS> + sum_i d_i k_i . (dS v_new_i),
    both from tiles this kernel has (S0, dS; Z = v_new dS^T), so hs[c + 1] is not read.
    Every product here is fp32 at PREC (the inputs are read as fp32 tiles); with PREC "bf16" those that carry T's
    conditioning into dv, dbeta, dq and dlog_decay (dR, dP, dq's intra-chunk term, and dbeta's dR v_new^T,
    dU S0^T, T^T Y, DE K: with repeated keys one pass each put 1e-2 to 2e-2 into dbeta) are PRECISE, the rest take
    one bf16 pass (docs/kernels.md, "The bf16 precision").
    """
    c, NC, n64, i_h, r_r, m_r, r_q, m_q = _chunk_program(T, H, NH, C, BL, BC)
    b_b = tl.load(beta_ptr + r_r, mask=m_r, other=0.0).to(tl.float32)
    b_g, b_gq, b_gl = _gates(gc_ptr, c, T, n64, i_h, H, NH, C, BL, BC, USE_G)
    if USE_G:
        b_Gam = tl.exp(b_g)
        b_d = tl.exp(b_gl - b_g)
        b_Gq = tl.exp(b_gq)
    else:
        b_Gam = tl.full([BL], 1.0, tl.float32)
        b_d = tl.full([BL], 1.0, tl.float32)
        b_Gq = tl.full([BC], 1.0, tl.float32)
    b_E, b_Eq = _masks(b_g, b_gq, NH, BL, BC, USE_G)
    o_r = tl.arange(0, BL)
    b_T = tl.load(ti_ptr + ((n64 * NC + c) * H + i_h) * BL * BL + o_r[:, None] * BL + o_r[None, :])

    # over V: dv, and the [L, L] products that sum over V
    NV: tl.constexpr = (V + BV - 1) // BV
    o_v = tl.arange(0, BV)
    b_dA = tl.zeros([BL, BL], dtype=tl.float32)
    b_dP = tl.zeros([BC, BL], dtype=tl.float32)
    b_dbv = tl.zeros([BL], dtype=tl.float32)
    for i_v in range(NV):
        o_vv = i_v * BV + o_v
        m_v = o_vv < V
        b_dU = _ld(dvn_ptr, 0, r_r, m_r, V, o_vv, m_v)
        b_vn = _ld(vn_ptr, 0, r_r, m_r, V, o_vv, m_v)
        b_do = _ld(do_ptr, 0, r_q, m_q, V, o_vv, m_v)
        b_v = _ld(v_ptr, 0, r_r, m_r, V, o_vv, m_v)
        b_dR = _mm(tl.trans(b_T), b_dU, PREC, True)
        _st(dv_ptr, 0, r_r, m_r, V, o_vv, m_v, b_b[:, None] * b_dR)
        b_dbv += tl.sum(b_dR * b_v, 1)
        b_dA += _mm(b_dR, tl.trans(b_vn), PREC, True)
        b_dP += _mm(_as_input(b_do, do_ptr, PREC), tl.trans(b_vn), PREC, True)
    b_DE = -b_dA * b_E  # dA * E, strictly lower through E
    b_dPm = scale * b_dP * b_Eq
    b_B = b_b[:, None] * b_DE

    # over K-blocks: dq, dk; each needs the V-sums dU S0^T, dO S0^T, v_new dS^T of its columns
    NK: tl.constexpr = (K + BK - 1) // BK
    o_k = tl.arange(0, BK)
    b_db = b_dbv
    b_qdq = tl.zeros([BC], dtype=tl.float32)
    b_sds = tl.zeros([BV], dtype=tl.float32)  # <S0, dS> per V column
    b_kz = tl.zeros([BL], dtype=tl.float32)  # d_i k_i . (dS v_new_i)
    p_h0 = ((n64 * (NC + 1) + c) * H + i_h) * K * V
    p_dh = ((n64 * NC + c) * H + i_h) * K * V
    for i_k in range(NK):
        o_kk = i_k * BK + o_k
        m_k = o_kk < K
        b_Y = tl.zeros([BL, BK], dtype=tl.float32)
        b_D = tl.zeros([BC, BK], dtype=tl.float32)
        b_Z = tl.zeros([BL, BK], dtype=tl.float32)
        for i_v in range(NV):
            o_vv = i_v * BV + o_v
            m_v = o_vv < V
            b_S0 = _ld(hs_ptr, p_h0, o_kk, m_k, V, o_vv, m_v)
            b_dS = _ld(dhs_ptr, p_dh, o_kk, m_k, V, o_vv, m_v)
            b_Y += _mm(_ld(dvn_ptr, 0, r_r, m_r, V, o_vv, m_v), tl.trans(_as_input(b_S0, hs_ptr, PREC)), PREC, True)
            b_D += _mm(_ld(do_ptr, 0, r_q, m_q, V, o_vv, m_v), tl.trans(b_S0), PREC, False)
            b_Z += _mm(_ld(vn_ptr, 0, r_r, m_r, V, o_vv, m_v), tl.trans(b_dS), PREC, False)
            if USE_G:
                b_sds += tl.sum(b_S0.to(tl.float32) * b_dS.to(tl.float32), 0)
        b_Y = _mm(tl.trans(b_T), b_Y, PREC, True)
        b_k = _blk(k_ptr, r_r, m_r, i_k, K, BK).to(tl.float32)
        b_q = _blk(q_ptr, r_q, m_q, i_k, K, BK).to(tl.float32)

        b_dq = _mm(b_dPm, _as_input(b_k, k_ptr, PREC), PREC, True) + (scale * b_Gq)[:, None] * b_D
        b_dk = _mm(b_B, b_k, PREC, False) + _mm(tl.trans(b_B), b_k, PREC, False)
        b_dk += _mm(tl.trans(b_dPm), b_q, PREC, False)
        b_dZ = b_d[:, None] * b_Z
        b_dk += b_dZ - (b_b * b_Gam)[:, None] * b_Y
        if USE_G:
            b_kz += tl.sum(b_k * b_dZ, 1)
        # sum_j DE_ij (k_i . k_j) as k_i . (DE K)_i: no [L, L] K K^T tile (its dot read shared memory out of
        # bounds on sm_90 with fp32 inputs, compute-sanitizer, triton 3.6), one more [L, L] x [L, BK] product
        b_db += tl.sum(b_k * _mm(b_DE, _as_input(b_k, k_ptr, PREC), PREC, True), 1) - b_Gam * tl.sum(b_k * b_Y, 1)
        b_qdq += tl.sum(b_q * b_dq, 1)
        _st(dq_ptr, 0, r_q, m_q, K, o_kk, m_k, b_dq)
        _st(dk_ptr, 0, r_r, m_r, K, o_kk, m_k, b_dk)
    tl.store(db_ptr + r_r, b_db.to(db_ptr.dtype.element_ty), mask=m_r)
    if USE_G:
        o_i = tl.arange(0, BC)
        b_vdv = b_b * b_dbv
        b_dg = tl.sum(tl.where(o_i[None, :] >= o_i[:, None], b_qdq[None, :], 0.0), 1)
        b_dg += tl.exp(b_gl) * tl.sum(b_sds, 0) + tl.sum(b_kz, 0)  # <S1, dS>
        b_dg -= tl.sum(tl.where(o_r[None, :] >= (o_i * NH)[:, None], b_vdv[None, :], 0.0), 1)
        tl.store(dg_ptr + r_q, b_dg.to(dg_ptr.dtype.element_ty), mask=m_q)
