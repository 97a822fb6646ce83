"""Packed batches for every mixer: documents laid end to end in one row, ``cu_seqlens`` [N + 1] marking their
starts (FlashAttention convention), no state and no convolution window crossing a boundary.

Mixers with ``supports_cu_seqlens`` take the packed row themselves (one pass, starting from empty states); for
the others (and for packed documents that continue from a state),
:func:`mixer_forward` runs the documents as a right-padded batch [N, T_max, D] when no state goes in or out (a
causal mixer's outputs at real positions never see the padding after them), and one document at a time when a
state does (the padding would otherwise run through the state).
"""

from __future__ import annotations

import torch

from statetrack.ops import Varlen

from .base import State


def cu_seqlens_from_position_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """position_ids [B, T] that restart at 0 for each document -> cu_seqlens [N + 1] of the flattened [1, B * T]
    row (every row start is a document start too)."""
    if position_ids.dim() != 2:
        raise ValueError(f"position_ids must have shape [B, T], got {list(position_ids.shape)}")
    B, T = position_ids.shape
    starts = position_ids.reshape(-1) == 0
    starts[::T] = True
    idx = starts.nonzero().flatten()
    return torch.cat([idx, idx.new_tensor([B * T])]).to(torch.int32)


def stack_states(states: list[State]) -> State:
    """One state per document -> the batch's state (concatenated along the batch axis)."""
    for k in states[0]:
        if len({s[k].shape[1:] for s in states}) > 1:
            raise ValueError(
                f"the documents' states {k!r} differ in shape (an attention layer's key/value cache grows with the "
                "document): there is no one batch state for them; run them one by one"
            )
    return {k: torch.cat([s[k] for s in states]) for k in states[0]}


def split_state(state: State, n: int) -> list[State]:
    """The batch's state -> one state per row."""
    return [{k: v[i : i + 1] for k, v in state.items()} for i in range(n)]


def mixer_forward(mixer, x: torch.Tensor, state: State | None, output_state: bool, cu_seqlens=None):
    """``mixer(x, state, output_state)``, packed when ``cu_seqlens`` is given (then x [1, T, D]; the state, in and
    out, has one row per document)."""
    if cu_seqlens is None:
        return mixer(x, state, output_state)
    if x.shape[0] != 1:
        raise ValueError(f"with cu_seqlens the batch size must be 1 (documents packed along T), got {x.shape[0]}")
    if getattr(mixer, "supports_cu_seqlens", False) and state is None:
        return mixer(x, None, output_state, cu_seqlens=cu_seqlens)
    if state is None and not output_state:
        v = Varlen(cu_seqlens, x.device)
        y, _ = mixer(v.pad(x), None, False)
        return v.unpad(y), None
    c = cu_seqlens.tolist()
    starts = split_state(state, len(c) - 1) if state is not None else [None] * (len(c) - 1)
    ys, finals = [], []
    for (a, b), s in zip(zip(c, c[1:], strict=False), starts, strict=True):
        y, f = mixer(x[:, a:b], s, output_state)
        ys.append(y)
        finals.append(f)
    stack = getattr(mixer, "stack_states", stack_states)  # a mixer whose states differ in shape stacks its own
    return torch.cat(ys, 1), (stack(finals) if output_state else None)
