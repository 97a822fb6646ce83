"""Which backends of an op can run on a device for a dtype, and the order ``backend="auto"`` tries them in.

Every op has "naive" (the sequential loop, the oracle: any device, any float dtype) and most have "torch" (a
chunked PyTorch form, any device). "triton" runs compiled on CUDA tensors, and on other devices only in a process
that set ``TRITON_INTERPRET=1`` before importing triton (Triton's interpreter: slow, for tests); its kernels compute
in fp32, so fp64 inputs never take it. Ops with further backends (the delta rule's "fla") add them to the dict.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._checks import refuse_off_path, require_chunk_size, require_config, resolve_backend
from ._triton import interpreter_requested, triton_installed


def triton_runs_on(device: torch.device, dtype: torch.dtype | None = None) -> bool:
    """Whether the Triton kernels can take tensors of ``device`` and ``dtype`` (None: any kernel dtype)."""
    return triton_installed() and (device.type == "cuda" or interpreter_requested()) and dtype != torch.float64


def available_backends(
    device: torch.device, dtype: torch.dtype | None = None, names: Sequence[str] = ("naive", "torch", "triton")
) -> dict[str, bool]:
    """{name: whether it can run here} for each of ``names`` (a subset of "naive", "torch", "triton")."""
    can = {"naive": True, "torch": True, "triton": triton_runs_on(device, dtype)}
    unknown = [n for n in names if n not in can]
    if unknown:
        raise ValueError(f"names must be among {list(can)}, got {unknown}")
    return {n: can[n] for n in names}


def auto_order(device: torch.device) -> tuple[str, ...]:
    """The order ``backend="auto"`` tries: the kernels first on CUDA; elsewhere the torch path, as the interpreter
    is only a test harness there. The first available one runs."""
    return ("triton", "torch", "naive") if device.type == "cuda" else ("torch", "naive")


def choose_backend(
    backend: str, device: torch.device, dtype: torch.dtype, *, chunk_size: int | None = None,
    triton_config: dict | None = None, triton_keys: Sequence[str] = (),
) -> tuple[str, dict]:  # fmt: skip
    """The backend a scan runs (``backend``, or for "auto" the first available in :func:`auto_order`), after checking
    its tuning arguments: ``chunk_size`` only for "torch", ``triton_config`` (keys among ``triton_keys``) only for
    "triton"; either given elsewhere raises. Returns (backend name, triton_config as a dict, empty if None)."""
    require_chunk_size(chunk_size)
    config = require_config("triton_config", triton_config, triton_keys)
    name = resolve_backend(backend, available_backends(device, dtype), device, auto_order(device))
    refuse_off_path("chunk_size", chunk_size, f"backend={name!r}", "backend='torch'")
    refuse_off_path("triton_config", triton_config, f"backend={name!r}", "backend='triton'")
    return name, config
