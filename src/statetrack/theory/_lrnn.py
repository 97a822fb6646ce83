"""Hand-set linear RNN layers on top of :func:`statetrack.ops.delta_rule` (no recurrence loop of our own).

A layer here is H_t = A(x_t) H_{t-1} + B(x_t) with a vector state H in R^K, where A(x) and B(x) come from
n_h generalized Householder steps per token, applied in order j = 1..n_h (later steps act on the left):

    H <- (I - beta_j k_j k_j^T) H + beta_j k_j v_j        (v_j a scalar: the op's value dimension V = 1)

The op keeps one state per head, so the state is copied into R heads that see the same k, v, beta and differ
only in their query: head r outputs o_t[r] = readout[r]^T H_t, i.e. R linear read-outs of the state per token.
Tables of factors are indexed by letter (an int): ``keys[letter]`` [n_h, K], ``betas[letter]`` [n_h],
``writes[letter]`` [n_h].
"""

from __future__ import annotations

import math

import torch

from statetrack.ops import delta_rule


class FactorTable:
    """Per-letter Householder factors of one layer: keys [L, n_h, K], betas [L, n_h], writes [L, n_h]."""

    def __init__(self, factors: list[list[tuple[list[float], float, float]]], dim: int):
        """``factors[letter]`` is a list of (key, beta, write) applied in order; shorter lists are padded with
        identity steps (beta = 0), so every letter uses the same n_h."""
        if not factors:
            raise ValueError("a layer needs at least one letter")
        self.dim = dim
        self.n_h = max(1, max(len(f) for f in factors))
        L = len(factors)
        keys = torch.zeros(L, self.n_h, dim, dtype=torch.float64)
        keys[:, :, 0] = 1.0  # identity padding: beta = 0 with a unit key
        betas = torch.zeros(L, self.n_h, dtype=torch.float64)
        writes = torch.zeros(L, self.n_h, dtype=torch.float64)
        for a, fs in enumerate(factors):
            for j, (key, beta, write) in enumerate(fs):
                keys[a, j] = torch.as_tensor(key, dtype=torch.float64)
                betas[a, j] = beta
                writes[a, j] = write
        self.keys, self.betas, self.writes = keys, betas, writes
        # how many factors each letter really uses (the paper's k - 1 for a permutation moving k points)
        self.used = [len(f) for f in factors]


def swap_key(i: int, j: int, dim: int) -> list[float]:
    """Unit key (e_i - e_j) / sqrt(2): with beta = 2, I - 2 k k^T swaps coordinates i and j."""
    k = [0.0] * dim
    k[i], k[j] = 1.0 / math.sqrt(2.0), -1.0 / math.sqrt(2.0)
    return k


def unit_key(i: int, dim: int) -> list[float]:
    k = [0.0] * dim
    k[i] = 1.0
    return k


def reflection_key(alpha: float) -> list[float]:
    """Unit normal u of the line at angle alpha / 2: I - 2 u u^T = H(alpha) = [[cos a, sin a], [sin a, -cos a]]."""
    return [-math.sin(alpha / 2.0), math.cos(alpha / 2.0)]


def run_layer(
    table: FactorTable,
    letters: torch.Tensor,
    h0: torch.Tensor,
    readout: torch.Tensor,
    *,
    dtype: torch.dtype = torch.float32,
    backend: str = "naive",
) -> torch.Tensor:
    """Run one hand-set layer with :func:`delta_rule`.

    Args:
        table: the per-letter factors (n_h of them, state dimension K).
        letters: [B, T] long, letter ids into ``table``.
        h0: [K] or [B, K] initial state H_0.
        readout: [R, K] read-out vectors (the queries of R heads).
        dtype: dtype of q, k, v, beta; the op keeps its state in fp32 (fp64 for fp64 inputs).
        backend: delta_rule backend. "naive" (the sequential reference) is the default because with beta = 2
            reflections it is both exact to ~1e-6 at T = 10,000 and, on CPU, the faster one (see docs/theory.md).

    Returns:
        o [B, T, R] in the state dtype: o[b, t, r] = readout[r]^T H_t.
    """
    if letters.dim() != 2:
        raise ValueError(f"letters must have shape [B, T], got {list(letters.shape)}")
    B, T = letters.shape
    R, K = readout.shape
    n_h = table.n_h
    sdt = torch.float64 if dtype == torch.float64 else torch.float32
    if T == 0:
        return torch.zeros(B, 0, R, dtype=sdt)
    k = table.keys.to(dtype)[letters]  # [B, T, n_h, K]
    beta = table.betas.to(dtype)[letters]  # [B, T, n_h]
    v = table.writes.to(dtype)[letters]  # [B, T, n_h]
    k = k[:, :, :, None, :].expand(B, T, n_h, R, K)
    beta = beta[:, :, :, None].expand(B, T, n_h, R)
    v = v[:, :, :, None, None].expand(B, T, n_h, R, 1)
    if n_h == 1:  # one Householder per token: the plain DeltaNet layout
        k, beta, v = k[:, :, 0], beta[:, :, 0], v[:, :, 0]
    q = readout.to(dtype)[None, None].expand(B, T, R, K)
    h0 = h0.to(sdt)
    if h0.dim() == 1:
        h0 = h0[None].expand(B, K)
    s0 = h0[:, None, :, None].expand(B, R, K, 1).contiguous()
    o, _ = delta_rule(q, k, v, beta, scale=1.0, initial_state=s0, backend=backend)
    return o[..., 0].to(sdt)
