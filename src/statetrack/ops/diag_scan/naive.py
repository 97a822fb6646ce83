"""Sequential reference of the signed diagonal scan, h_t = a_t * h_{t-1} + b_t (elementwise, a_t in [-1, 1]): the
oracle.

A plain Python loop in the state dtype, differentiable by autograd. Inputs are validated by the api already.
Time slices come from ``unbind`` rather than ``x[:, t]``: the backward of one ``unbind`` stacks the T slice
gradients once, while T separate ``select``s each scatter into a fresh [B, T, ...] zero tensor (O(T^2) work).
"""

from __future__ import annotations

import torch


def diag_scan_naive(a, b, initial_state, state_dtype):
    """a, b [B, T, ...] -> (h [B, T, ...], final state [B, ...]), both in ``state_dtype``."""
    h = a.new_zeros(a.shape[:1] + a.shape[2:], dtype=state_dtype) if initial_state is None else initial_state
    outs = []
    for at, bt in zip(a.to(state_dtype).unbind(1), b.to(state_dtype).unbind(1), strict=True):
        h = at * h + bt
        outs.append(h)
    hs = torch.stack(outs, dim=1) if outs else a.new_zeros(a.shape, dtype=state_dtype)
    return hs, h
