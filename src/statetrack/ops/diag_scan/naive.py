"""Sequential references of the signed diagonal scan and of Mamba's selective scan: the oracles.

    diag:       h_t = a_t * h_{t-1} + b_t                                  (elementwise, a_t in [-1, 1])
    selective:  a_t = m + (1 - m) exp(delta_t A),  h_t = a_t * h_{t-1} + (delta_t u_t) B_t,
                y_t = C_t . h_t + D u_t  (times silu(z_t))

Plain Python loops in the state dtype, differentiable by autograd. Inputs are validated by the api already.
Time slices come from ``unbind`` rather than ``x[:, t]``: the backward of one ``unbind`` stacks the T slice
gradients once, while T separate ``select``s each scatter into a fresh [B, T, ...] zero tensor (O(T^2) work).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def diag_scan_naive(a, b, initial_state, state_dtype):
    """a, b [B, T, ...] -> (h [B, T, ...], final state [B, ...]), both in ``state_dtype``."""
    h = a.new_zeros(a.shape[:1] + a.shape[2:], dtype=state_dtype) if initial_state is None else initial_state
    outs = []
    for at, bt in zip(a.to(state_dtype).unbind(1), b.to(state_dtype).unbind(1), strict=True):
        h = at * h + bt
        outs.append(h)
    hs = torch.stack(outs, dim=1) if outs else a.new_zeros(a.shape, dtype=state_dtype)
    return hs, h


def selective_step_core(u, delta, A, B, C, D, z, min_eigenvalue, state):
    """One token of the selective scan in the state's dtype.

    u, delta, z [Bt, Dm]; A [Dm, N]; B, C [Bt, N]; D [Dm] or None; state [Bt, Dm, N].
    Returns (y [Bt, Dm], new state [Bt, Dm, N])."""
    dt = state.dtype
    u, delta, A, B, C = (x.to(dt) for x in (u, delta, A, B, C))
    m = min_eigenvalue
    a = m + (1.0 - m) * torch.exp(delta[..., None] * A)
    state = a * state + (delta * u)[..., None] * B[:, None, :]
    y = (state * C[:, None, :]).sum(-1)
    if D is not None:
        y = y + D.to(dt) * u
    if z is not None:
        y = y * F.silu(z.to(dt))
    return y, state


def selective_scan_naive(u, delta, A, B, C, D, z, min_eigenvalue, initial_state, state_dtype):
    """u, delta, z [Bt, T, Dm]; A [Dm, N]; B, C [Bt, T, N]; D [Dm] -> (y [Bt, T, Dm], final [Bt, Dm, N])."""
    Bt, T, Dm = u.shape
    N = A.shape[1]
    state = u.new_zeros(Bt, Dm, N, dtype=state_dtype) if initial_state is None else initial_state
    zs = z.unbind(1) if z is not None else [None] * T
    ys = []
    for ut, dlt, Bt_, Ct, zt in zip(u.unbind(1), delta.unbind(1), B.unbind(1), C.unbind(1), zs, strict=True):
        y, state = selective_step_core(ut, dlt, A, Bt_, Ct, D, zt, min_eigenvalue, state)
        ys.append(y)
    y = torch.stack(ys, dim=1) if ys else u.new_zeros(Bt, 0, Dm, dtype=state_dtype)
    return y, state
