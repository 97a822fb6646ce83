"""Several bias-free projections of one input as one matmul.

A decoding step at batch 1 is bound by kernel launches, not by work: DeltaNet's q, k, v, beta (and gate) projections
are five small GEMVs of the same x; a training forward over short sequences likewise runs three times fewer (and
larger) kernels with q, k, v as one. :func:`fused_project` gives the projections side by side from one matmul:
with gradients on, through the weights concatenated on each call (autograd splits the weight gradient back);
under ``torch.no_grad`` (unless told not to cache), through a concatenated copy kept per module and set of
linears and rebuilt when any weight changes (an in-place update bumps its version counter; ``.to()`` gives new
storage). The cache lives beside the module, not in it, so that state dicts, deep copies and pickles never see
it. :func:`project` gives them one by one: one matmul without gradients, with gradients the projections
themselves (no copy of the weights kept for the backward).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# owner -> {the linears' ids: (their weights' identity and versions, the concatenated weight)}
_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple, tuple[tuple, torch.Tensor]]] = weakref.WeakKeyDictionary()


def _key(linears: Sequence[nn.Linear]) -> tuple:
    return tuple((lin.weight.data_ptr(), lin.weight._version, lin.weight.dtype) for lin in linears)


def _require_bias_free(linears: Sequence[nn.Linear]) -> None:
    if any(lin.bias is not None for lin in linears):
        raise ValueError("project() takes bias-free linears")


def fused_project(owner: nn.Module, x: torch.Tensor, linears: Sequence[nn.Linear], cache: bool = True) -> torch.Tensor:
    """x [..., D] -> the linears' outputs side by side [..., sum of out_i], as one matmul. ``owner`` (the module the
    linears belong to) keys the cached weight used without gradients; ``cache=False`` concatenates on each call
    then too (a set used once per sequence, such as a prefill's, is not worth a resident copy of its weights).
    The linears must have no bias."""
    _require_bias_free(linears)
    if len(linears) == 1:
        return linears[0](x)
    if torch.is_grad_enabled() or not cache:
        return F.linear(x, torch.cat([lin.weight for lin in linears]))
    sets = _CACHE.setdefault(owner, {})
    ids, key = tuple(map(id, linears)), _key(linears)
    hit = sets.get(ids)
    if hit is None or hit[0] != key:
        hit = sets[ids] = (key, torch.cat([lin.weight for lin in linears]))
    return F.linear(x, hit[1])


def project(owner: nn.Module, x: torch.Tensor, linears: Sequence[nn.Linear]) -> list[torch.Tensor]:
    """x [..., D] -> [lin(x) for lin in linears] ([..., out_i] each): without gradients one matmul
    (:func:`fused_project`), with them the linears one by one."""
    if torch.is_grad_enabled():
        _require_bias_free(linears)
        return [lin(x) for lin in linears]
    return list(fused_project(owner, x, linears).split([lin.out_features for lin in linears], -1))
