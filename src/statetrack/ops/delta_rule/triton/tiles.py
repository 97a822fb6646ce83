"""``@triton.jit`` helpers shared by the delta-rule kernel modules: program indices and masked tile loads/stores.

Only ``@triton.jit`` code (see ``statetrack/ops/_triton.py``); imported by the kernel modules, never by launch code.
"""

import triton
import triton.language as tl


@triton.jit
def seq_head(axis, H: tl.constexpr):
    """(sequence index as int64, head) of this program on an ``N * H`` grid axis: 64-bit offsets start there."""
    i_nh = tl.program_id(axis)
    return (i_nh // H).to(tl.int64), i_nh % H


@triton.jit
def load_tile(ptr, base, rows, m_rows, ld, cols, m_cols):
    """fp32 tile [len(rows), len(cols)] of the row-major matrix at ``ptr + base`` with leading dimension ``ld``;
    masked entries read 0."""
    p = ptr + base + rows[:, None] * ld + cols[None, :]
    return tl.load(p, mask=m_rows[:, None] & m_cols[None, :], other=0.0).to(tl.float32)


@triton.jit
def store_tile(ptr, base, rows, m_rows, ld, cols, m_cols, x):
    """Store ``x`` [len(rows), len(cols)] where ``load_tile`` reads, in the buffer's dtype."""
    tl.store(ptr + base + rows[:, None] * ld + cols[None, :], x.to(ptr.dtype.element_ty),
             mask=m_rows[:, None] & m_cols[None, :])  # fmt: skip
