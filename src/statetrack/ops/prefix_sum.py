"""``prefix_sum``: an inclusive cumulative sum that also runs under ``torch.use_deterministic_algorithms(True)``.

torch.cumsum has no deterministic CUDA implementation for floats (its 1-D form scans with CUB's decoupled
look-back, whose order of additions depends on timing) and raises in deterministic mode. The log-step form here
is a fixed sequence of element-wise adds: the same bits every run, and autograd's backward is element-wise too.
"""

from __future__ import annotations

import torch

ALGORITHMS = ("auto", "torch", "log_step")


def prefix_sum(x: torch.Tensor, dim: int, *, algorithm: str = "auto") -> torch.Tensor:
    """y[..., t, ...] = sum_{s <= t} x[..., s, ...] along ``dim``; y has x's shape and dtype; differentiable.

    algorithm: "torch" (torch.cumsum), "log_step" (ceil(log2 T) passes y_t += y_{t - 2^j}, Hillis-Steele: sums
    in another order, so the last bits can differ from torch.cumsum; rounding error grows as log T, not T), or
    "auto": "log_step" for a floating CUDA tensor while torch's deterministic algorithms are on (where
    torch.cumsum raises), else "torch".
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if algorithm == "auto":
        det = x.is_cuda and (x.is_floating_point() or x.is_complex()) and torch.are_deterministic_algorithms_enabled()
        algorithm = "log_step" if det else "torch"
    if algorithm == "torch":
        return torch.cumsum(x, dim)
    n = x.shape[dim]
    shift = 1
    while shift < n:
        head = x.narrow(dim, 0, shift)
        x = torch.cat([head, x.narrow(dim, shift, n - shift) + x.narrow(dim, 0, n - shift)], dim)
        shift *= 2
    return x
