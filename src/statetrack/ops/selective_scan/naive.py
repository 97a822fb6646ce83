"""Mamba-1's selective scan, one token at a time: the transition, the step and the sequential loop (the oracle).

    a_t = m + (1 - m) exp(delta_t A),  h_t = a_t * h_{t-1} + (delta_t u_t) B_t,  y_t = C_t . h_t + D u_t  (* silu(z_t))

per channel d and state index n (m = min_eigenvalue in [-1, 0]; 0 is the original Mamba). Shape letters: Bt batch,
T time, Dm channels, N state size. Plain PyTorch in the state dtype, differentiable by autograd; inputs are validated
by the api already. Time slices come from ``unbind``: the backward of one ``unbind`` stacks the T slice gradients
once, while T separate ``select``s each scatter into a fresh [Bt, T, ...] zero tensor (O(T^2) work).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def selective_transition(delta: torch.Tensor, A: torch.Tensor, min_eigenvalue: float) -> torch.Tensor:
    """The decays a = min_eigenvalue + (1 - min_eigenvalue) exp(delta A), elementwise in [min_eigenvalue, 1] for
    delta >= 0 and A <= 0.

    delta [..., Dm]; A [Dm, N] -> a [..., Dm, N] in the promoted dtype. At min_eigenvalue = 0 it is exp(delta A) to
    the bit (the original Mamba); the Triton kernels compute the same expression (``ops._scan_kernels``)."""
    a = torch.exp(delta[..., None] * A)
    if min_eigenvalue != 0.0:
        a = torch.add(a * (1.0 - min_eigenvalue), min_eigenvalue)
    return a


def selective_terms(u, delta, A, B, min_eigenvalue: float):
    """Decay and write of the scan. u, delta [..., Dm]; A [Dm, N]; B [..., N] -> a, b [..., Dm, N]."""
    b = (delta * u)[..., None] * B[..., None, :]
    return selective_transition(delta, A, min_eigenvalue), b


def selective_readout(h, u, C, D, z):
    """h [..., Dm, N]; u, z [..., Dm]; C [..., N]; D [Dm] or None -> y [..., Dm] = C . h + D u (* silu(z))."""
    y = (h @ C[..., None]).squeeze(-1)
    if D is not None:
        y = y + D * u
    if z is not None:
        y = y * F.silu(z)
    return y


def selective_step(u, delta, A, B, C, D, z, min_eigenvalue: float, state):
    """One token, all in the state dtype: u, delta, z [Bt, Dm]; A [Dm, N]; B, C [Bt, N]; D [Dm] or None;
    state [Bt, Dm, N] -> (y [Bt, Dm], new state [Bt, Dm, N])."""
    a, b = selective_terms(u, delta, A, B, min_eigenvalue)
    state = torch.addcmul(b, a, state)  # the op of the chunked scan, so decoding continues it closely
    return selective_readout(state, u, C, D, z), state


def selective_scan_naive(u, delta, A, B, C, D, z, min_eigenvalue: float, initial_state, state_dtype: torch.dtype):
    """u, delta, z [Bt, T, Dm]; A [Dm, N]; B, C [Bt, T, N]; D [Dm] or None; initial_state [Bt, Dm, N] or None
    -> (y [Bt, T, Dm], final state [Bt, Dm, N]), in ``state_dtype`` (the inputs are cast to it)."""
    u, delta, A, B, C, D, z = (None if x is None else x.to(state_dtype) for x in (u, delta, A, B, C, D, z))
    Bt, T, Dm = u.shape
    state = u.new_zeros(Bt, Dm, A.shape[1]) if initial_state is None else initial_state
    zs = z.unbind(1) if z is not None else [None] * T
    ys = []
    for u_t, delta_t, B_t, C_t, z_t in zip(u.unbind(1), delta.unbind(1), B.unbind(1), C.unbind(1), zs, strict=True):
        y, state = selective_step(u_t, delta_t, A, B_t, C_t, D, z_t, min_eigenvalue, state)
        ys.append(y)
    y = torch.stack(ys, dim=1) if ys else u.new_zeros(Bt, 0, Dm)
    return y, state
