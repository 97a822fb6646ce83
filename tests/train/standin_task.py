"""A tiny parity task with the contract of statetrack.tasks (used by the trainer tests only).

Tokens: 0 = pad, 1 / 2 = bits 0 / 1. A sequence of L bits is followed by one pad at position L whose target is
the parity (as token 1 + parity): one answer position per sequence, answer-only loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    input: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor


class TinyParity:
    name = "parity"
    vocab_size = 3
    pad_id = 0
    chance = 0.5
    kind = "chomsky"
    train_lengths = (3, 12)
    test_lengths = (12, 24)

    def positions(self, length: int) -> int:
        """Columns of a sequence of ``length`` bits: the bits and the answer position."""
        return length + 1

    def sample(self, batch_size, generator=None, lengths=None) -> Batch:
        if lengths is None:
            lengths = self.train_lengths
        lo, hi = (lengths, lengths) if isinstance(lengths, int) else lengths
        L = torch.randint(lo, hi + 1, (batch_size,), generator=generator)
        T = int(L.max()) + 1
        bits = torch.randint(0, 2, (batch_size, T), generator=generator)
        valid = torch.arange(T)[None] < L[:, None]
        inp = torch.where(valid, bits + 1, torch.zeros_like(bits))
        parity = (bits * valid).sum(1) % 2
        rows = torch.arange(batch_size)
        tgt = torch.zeros_like(inp)
        tgt[rows, L] = parity + 1
        mask = torch.zeros_like(inp, dtype=torch.bool)
        mask[rows, L] = True
        return Batch(inp, tgt, mask, L)

    def test_set(self, size="small") -> Batch:
        return self.sample(64 if size == "small" else 256, torch.Generator().manual_seed(7), self.test_lengths)
