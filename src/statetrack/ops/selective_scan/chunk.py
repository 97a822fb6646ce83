"""Mamba-1's selective scan on the chunked diagonal scan (one scan for both ops): the CPU (and fallback) path.

The [Dm, N] state is flattened to Dm * N independent lanes of :func:`diag_scan_chunk`, whose decays and writes are
``naive.selective_terms``; gradients of delta, A, B, u reach the scan's da, db through autograd. Everything here runs
in the state dtype.
"""

from __future__ import annotations

import torch

from ..diag_scan.scan import diag_scan_chunk
from .naive import selective_readout, selective_terms

# elements of one [Bt, L, Dm, N] term tensor of a time block (fp32: 256 MB); a, b and h of a block live at once
BLOCK_ELEMENTS = 1 << 26


def selective_scan_chunk(u, delta, A, B, C, D, z, min_eigenvalue: float, initial_state, chunk_size: int):
    """u, delta, z [Bt, T, Dm]; A [Dm, N]; B, C [Bt, T, N]; D [Dm]; initial_state [Bt, Dm, N] or None; chunk_size
    in tokens.

    All in the state dtype. Returns (y [Bt, T, Dm], final state [Bt, Dm, N]). The [Bt, T, Dm, N] terms are formed
    for blocks of whole chunks at a time (of any length for the plain loop; at most ``BLOCK_ELEMENTS`` each), the
    state carried between blocks: the same chunks, so the same result, in bounded memory (evaluating a 5-layer
    Mamba on 512 sequences of 500 tokens held 16 GB in one pass, 2.9 GB so)."""
    Bt, T, Dm = u.shape
    N = A.shape[1]
    lanes = max(Bt * Dm * N, 1)
    if chunk_size >= T:  # one chunk: the plain sequential loop, which any split of time continues exactly
        block = max(1, BLOCK_ELEMENTS // lanes)
    else:
        block = max(1, BLOCK_ELEMENTS // (lanes * chunk_size)) * chunk_size
    if T <= block:
        return _selective_block(u, delta, A, B, C, D, z, min_eigenvalue, initial_state, chunk_size)
    ys, state = [], initial_state
    for t in range(0, T, block):
        s = slice(t, t + block)
        zs = None if z is None else z[:, s]
        y, state = _selective_block(u[:, s], delta[:, s], A, B[:, s], C[:, s], D, zs, min_eigenvalue, state, chunk_size)
        ys.append(y)
    return torch.cat(ys, 1), state


def _selective_block(u, delta, A, B, C, D, z, min_eigenvalue: float, initial_state, chunk_size: int):
    Bt, T, Dm = u.shape
    N = A.shape[1]
    a, b = selective_terms(u, delta, A, B, min_eigenvalue)
    init = None if initial_state is None else initial_state.reshape(Bt, Dm * N)
    h, final = diag_scan_chunk(a.reshape(Bt, T, Dm * N), b.reshape(Bt, T, Dm * N), init, chunk_size)
    y = selective_readout(h.view(Bt, T, Dm, N), u, C, D, z)
    return y, final.view(Bt, Dm, N)
