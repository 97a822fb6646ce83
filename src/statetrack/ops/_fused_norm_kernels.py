"""Triton kernels of the fused row norms (``fused_norms.py``): L2 normalisation and the (gated) RMSNorm.

This module holds only ``@triton.jit`` code (``ops._triton.kernels_for`` imports it once the device is known to be
able to run it). One program owns BR rows of D elements (D <= BD, a power of two): a row is read once, its
statistic reduced in registers and the row written once, forward and backward. Arithmetic is in fp32 (fp64 for
fp64 tensors, the tests' oracle precision); loads and stores are in the tensors' own dtypes.

EPS is a constexpr, not a float argument: Triton passes float arguments as fp32, which would round eps (1e-6 is
not an fp32 number) and put a ~1e-10 error into fp64 results; a constexpr takes the dtype it meets at full value.

Rows of the L2 kernels come from a [M0, M1, D] view with strides (s0, s1, 1), so q and k can be read straight from
the columns of the fused q/k/v projection without a copy; outputs and gradients are contiguous [M0 * M1, D].
"""

import triton
import triton.language as tl


@triton.jit
def _tile(n_rows, D, BR: tl.constexpr, BD: tl.constexpr):
    """This program's [BR, BD] tile of a contiguous [n_rows, D] tensor: row indices (int64), their mask, column
    indices, their mask, the tile's mask and its element offsets."""
    rows = tl.program_id(0).to(tl.int64) * BR + tl.arange(0, BR)
    m_r = rows < n_rows
    o_d = tl.arange(0, BD)
    m_d = o_d < D
    return rows, m_r, o_d, m_d, m_r[:, None] & m_d[None, :], rows[:, None] * D + o_d[None, :]


@triton.jit
def l2norm_fwd_kernel(
    x_ptr, y_ptr, r_ptr, n_rows, M1, s0, s1, D,
    EPS: tl.constexpr, BR: tl.constexpr, BD: tl.constexpr, CLAMP: tl.constexpr, F64: tl.constexpr,
):  # fmt: skip
    """y = x r with r = 1 / max(|x|, eps) (CLAMP: torch's F.normalize) or 1 / sqrt(|x|^2 + eps); r kept per row."""
    acc: tl.constexpr = tl.float64 if F64 else tl.float32
    rows, m_r, o_d, _, m, off = _tile(n_rows, D, BR, BD)
    src = (rows // M1) * s0 + (rows % M1) * s1
    x = tl.load(x_ptr + src[:, None] + o_d[None, :], mask=m, other=0.0).to(acc)
    ss = tl.sum(x * x, 1)
    if CLAMP:
        r = 1.0 / tl.maximum(tl.sqrt(ss), EPS)
    else:
        r = 1.0 / tl.sqrt(ss + EPS)
    tl.store(y_ptr + off, (x * r[:, None]).to(y_ptr.dtype.element_ty), mask=m)
    tl.store(r_ptr + rows, r.to(r_ptr.dtype.element_ty), mask=m_r)


@triton.jit
def l2norm_bwd_kernel(
    y_ptr, r_ptr, dy_ptr, dx_ptr, n_rows, D,
    EPS: tl.constexpr, BR: tl.constexpr, BD: tl.constexpr, CLAMP: tl.constexpr, F64: tl.constexpr,
):  # fmt: skip
    """dx = r (dy - (y . dy) y), from the saved output y and r (no copy of x kept); where the clamp of F.normalize
    was active (|x| < eps) y = x / eps is linear in x and dx = dy / eps."""
    acc: tl.constexpr = tl.float64 if F64 else tl.float32
    rows, m_r, _, _, m, off = _tile(n_rows, D, BR, BD)
    y = tl.load(y_ptr + off, mask=m, other=0.0).to(acc)
    dy = tl.load(dy_ptr + off, mask=m, other=0.0).to(acc)
    r = tl.load(r_ptr + rows, mask=m_r, other=0.0).to(acc)
    proj = tl.sum(y * dy, 1)
    if CLAMP:
        proj = tl.where(r * EPS >= 1.0, 0.0, proj)
    dx = r[:, None] * (dy - proj[:, None] * y)
    tl.store(dx_ptr + off, dx.to(dx_ptr.dtype.element_ty), mask=m)


@triton.jit
def _silu_parts(g):
    """(sigmoid(g), silu(g)) in g's dtype."""
    sg = 1.0 / (1.0 + tl.exp(-g))
    return sg, g * sg


@triton.jit
def rmsnorm_fwd_kernel(
    x_ptr, g_ptr, w_ptr, y_ptr, r_ptr, n_rows, D,
    EPS: tl.constexpr, BR: tl.constexpr, BD: tl.constexpr, HAS_GATE: tl.constexpr, F64: tl.constexpr,
):  # fmt: skip
    """y = x r w (* silu(g)) with r = 1 / sqrt(mean(x^2) + eps); r kept per row."""
    acc: tl.constexpr = tl.float64 if F64 else tl.float32
    rows, m_r, o_d, m_d, m, off = _tile(n_rows, D, BR, BD)
    x = tl.load(x_ptr + off, mask=m, other=0.0).to(acc)
    w = tl.load(w_ptr + o_d, mask=m_d, other=0.0).to(acc)
    r = 1.0 / tl.sqrt(tl.sum(x * x, 1) / D + EPS)
    y = x * r[:, None] * w[None, :]
    if HAS_GATE:
        g = tl.load(g_ptr + off, mask=m, other=0.0).to(acc)
        _, silu = _silu_parts(g)
        y = y * silu
    tl.store(y_ptr + off, y.to(y_ptr.dtype.element_ty), mask=m)
    tl.store(r_ptr + rows, r.to(r_ptr.dtype.element_ty), mask=m_r)


@triton.jit
def rmsnorm_bwd_kernel(
    x_ptr, g_ptr, w_ptr, r_ptr, dy_ptr, dx_ptr, dg_ptr, dw_ptr, n_rows, D,
    BR: tl.constexpr, BD: tl.constexpr, HAS_GATE: tl.constexpr, NEED_DW: tl.constexpr, F64: tl.constexpr,
):  # fmt: skip
    """With xh = x r, n = xh w, y = n silu(g): dg = dy n silu'(g); dn = dy silu(g); dx = r (dn w - xh mean(dn w xh));
    this program's share of dw = sum over its rows of dn xh goes to row ``program_id`` of dw_ptr [programs, D]."""
    acc: tl.constexpr = tl.float64 if F64 else tl.float32
    rows, m_r, o_d, m_d, m, off = _tile(n_rows, D, BR, BD)
    x = tl.load(x_ptr + off, mask=m, other=0.0).to(acc)
    dy = tl.load(dy_ptr + off, mask=m, other=0.0).to(acc)
    w = tl.load(w_ptr + o_d, mask=m_d, other=0.0).to(acc)
    r = tl.load(r_ptr + rows, mask=m_r, other=0.0).to(acc)
    xh = x * r[:, None]
    if HAS_GATE:
        g = tl.load(g_ptr + off, mask=m, other=0.0).to(acc)
        sg, silu = _silu_parts(g)
        dg = dy * xh * w[None, :] * (sg * (1.0 + g * (1.0 - sg)))
        tl.store(dg_ptr + off, dg.to(dg_ptr.dtype.element_ty), mask=m)
        dn = dy * silu
    else:
        dn = dy
    if NEED_DW:
        tl.store(dw_ptr + tl.program_id(0).to(tl.int64) * D + o_d, tl.sum(dn * xh, 0), mask=m_d)
    dxh = dn * w[None, :]
    dx = r[:, None] * (dxh - xh * (tl.sum(dxh * xh, 1) / D)[:, None])
    tl.store(dx_ptr + off, dx.to(dx_ptr.dtype.element_ty), mask=m)
