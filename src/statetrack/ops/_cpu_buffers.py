"""Uninitialised CPU buffers for the torch paths of the ops: large ones from NumPy (huge pages), and a small
caching pool for the chunked delta rule's scratch. CUDA tensors and small buffers come from PyTorch's allocator."""

from __future__ import annotations

import sys
import threading

import numpy as np
import torch

NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}
_HUGE = 1 << 24  # bytes; below this the allocation is cheap anyway


def empty_buffer(shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Uninitialised contiguous tensor; large CPU buffers come from NumPy.

    NumPy asks Linux for transparent huge pages on large allocations (madvise), PyTorch's CPU allocator does
    not (unless THP_MEM_ALLOC_ENABLE=1). First-touch page faults of a 64 MB buffer then cost ~5x less, which
    on a small VM is more than the scan itself. The tensor shares the array's memory; nothing else changes.
    """
    shape = tuple(shape)
    if torch.device(device).type != "cpu" or dtype not in NUMPY_DTYPES or nbytes(shape, dtype) < _HUGE:
        return torch.empty(shape, dtype=dtype, device=device)
    return torch.from_numpy(np.empty(shape, dtype=NUMPY_DTYPES[dtype]))


def nbytes(shape, dtype: torch.dtype) -> int:
    n = dtype.itemsize
    for s in shape:
        n *= s
    return n


class _ScratchPool:
    """Large CPU buffers, kept for reuse by later calls (a caching allocator, as PyTorch has for CUDA).

    One fwd+bwd at B=8, T=2048, H=4, K=V=64 takes ~150 MB of fresh buffers; even on huge pages their first-touch
    page faults (the kernel zeroes every page) cost ~10 ms of its ~100. A buffer is free again once no tensor uses
    it: its array's reference count is back to the pool's own (tensors from ``torch.from_numpy`` hold the array).
    Buffers are matched by exact size (a training loop repeats its shapes); at most ``idle_limit`` bytes of free
    buffers are kept past an allocation, so memory held between calls is bounded by the larger of that and one
    call's own use."""

    def __init__(self, idle_limit: int):
        self.arrays: list[np.ndarray] = []
        self.idle_limit = idle_limit
        self.lock = threading.Lock()

    def take(self, nbytes: int) -> np.ndarray:
        with self.lock:
            found, idle = None, []
            for arr in self.arrays:
                if sys.getrefcount(arr) <= 3:  # the list, ``arr`` and the call's argument: no tensor uses it
                    if found is None and arr.nbytes == nbytes:
                        found = arr
                    else:
                        idle.append(arr)
            if found is None:
                found = np.empty(nbytes, dtype=np.uint8)  # NumPy asks for huge pages on large allocations
                self.arrays.append(found)
            total, dropped = sum(a.nbytes for a in idle), set()
            for arr in sorted(idle, key=lambda a: a.nbytes, reverse=True):
                if total <= self.idle_limit:
                    break
                total -= arr.nbytes
                dropped.add(id(arr))
            # by identity: list.remove would compare arrays with ==, elementwise
            self.arrays = [a for a in self.arrays if id(a) not in dropped]
            return found


_POOL = _ScratchPool(idle_limit=1 << 29)
_POOL_MIN = 1 << 20  # bytes: smaller buffers come from PyTorch's allocator


def pooled_buffer(like: torch.Tensor, *shape: int) -> torch.Tensor:
    """Uninitialised contiguous buffer of ``like``'s dtype and device; large CPU ones from the pool (no page faults
    once warm), the rest from :func:`empty_buffer`."""
    size = nbytes(shape, like.dtype)
    if like.device.type != "cpu" or like.dtype not in NUMPY_DTYPES or size < _POOL_MIN:
        return empty_buffer(shape, like.dtype, like.device)
    return torch.from_numpy(_POOL.take(size).view(NUMPY_DTYPES[like.dtype]).reshape(shape))
