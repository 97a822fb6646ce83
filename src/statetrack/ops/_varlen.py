"""Packed <-> padded conversion for variable-length batches (FlashAttention ``cu_seqlens`` convention).

Every op runs a packed batch [1, T_total, ...] as a padded batch [N, T_max, ...] whose padding sits at the end of
each row and is chosen to be an identity step of the recurrence (zero write, unit transition), so the final state
of a row is the final state of its sequence. One index tensor does both directions, so gradients flow through.
"""

from __future__ import annotations

import torch


class Varlen:
    """Index maps for ``cu_seqlens`` [N + 1] (validated, on any device)."""

    def __init__(self, cu_seqlens: torch.Tensor, device: torch.device):
        c = cu_seqlens.tolist()
        lens = [b - a for a, b in zip(c, c[1:], strict=False)]
        self.n = len(lens)
        self.t_max = max(1, max(lens))
        self.total = c[-1]
        rows = torch.repeat_interleave(torch.arange(self.n), torch.tensor(lens))
        cols = torch.arange(self.total) - torch.tensor(c[:-1]).repeat_interleave(torch.tensor(lens))
        self.flat = (rows * self.t_max + cols).to(device)  # packed position -> padded flat position

    def pad(self, x: torch.Tensor | None, fill: float = 0.0) -> torch.Tensor | None:
        """[1, T_total, *rest] -> [N, T_max, *rest], ``fill`` in the padding."""
        if x is None:
            return None
        rest = x.shape[2:]
        out = x.new_full((self.n * self.t_max, *rest), fill)
        out = out.index_copy(0, self.flat, x[0])
        return out.reshape(self.n, self.t_max, *rest)

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """[N, T_max, *rest] -> [1, T_total, *rest]."""
        return x.reshape(self.n * self.t_max, *x.shape[2:]).index_select(0, self.flat)[None]
