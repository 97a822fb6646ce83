"""Several bias-free projections of one input as one matmul, for decoding.

A decoding step at batch 1 is bound by kernel launches, not by work: DeltaNet's q, k, v, beta (and gate) projections
are five small GEMVs of the same x. Under ``torch.no_grad`` :func:`project` runs them as one, through the
concatenated weight, which it keeps per module and rebuilds when any weight changes (an in-place update bumps
its version counter; ``.to()`` gives new storage). The cache lives beside the module, not in it, so that state dicts,
deep copies and pickles never see it. With gradients on, the projections run one by one (no extra copy of the
weights to keep for the backward).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, torch.Tensor]] = weakref.WeakKeyDictionary()


def _key(linears: Sequence[nn.Linear]) -> tuple:
    return tuple((lin.weight.data_ptr(), lin.weight._version, lin.weight.dtype) for lin in linears)


def project(owner: nn.Module, x: torch.Tensor, linears: Sequence[nn.Linear]) -> list[torch.Tensor]:
    """x [..., D] -> [lin(x) for lin in linears] ([..., out_i] each); ``owner`` keys the cached weight (the module
    the linears belong to; one set of linears per owner). The linears must have no bias."""
    if any(lin.bias is not None for lin in linears):
        raise ValueError("project() takes bias-free linears")
    if torch.is_grad_enabled() or len(linears) == 1:
        return [lin(x) for lin in linears]
    key = _key(linears)
    hit = _CACHE.get(owner)
    if hit is None or hit[0] != key:
        hit = (key, torch.cat([lin.weight for lin in linears]))
        _CACHE[owner] = hit
    return list(F.linear(x, hit[1]).split([lin.out_features for lin in linears], -1))
