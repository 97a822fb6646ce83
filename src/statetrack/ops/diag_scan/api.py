"""Public entry points of the signed diagonal recurrence: ``diag_scan`` (whole sequences), ``diag_scan_step`` (one)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import require_float, require_range, require_same_device, require_state, state_dtype
from ..backends import choose_backend
from .naive import diag_scan_naive
from .scan import default_chunk_size, diag_scan_chunk
from .triton import DIAG_KEYS, diag_scan_triton


def _check_diag(a, b, state, state_name: str, with_time: bool) -> tuple[torch.dtype, torch.dtype]:
    """Validate; returns (output dtype, state dtype). Shapes with the time axis when ``with_time``, else without."""
    require_float("a", a)
    require_float("b", b)
    lead = "[B, T, ...]" if with_time else "[B, ...]"
    if a.dim() < (2 if with_time else 1):
        raise ValueError(f"a must have shape {lead}, got {list(a.shape)}")
    if b.shape != a.shape:
        raise ValueError(f"b must have the shape of a, {lead} = {list(a.shape)}, got {list(b.shape)}")
    require_same_device(a=a, b=b, **{state_name: state})
    out_dtype = torch.promote_types(a.dtype, b.dtype)
    sdt = state_dtype(out_dtype)
    state_shape = a.shape[:1] + a.shape[2:] if with_time else a.shape
    require_state(state_name, state, tuple(state_shape), "[B, ...] (a without its time axis)", sdt)
    require_range("a", a, -1.0, 1.0)
    return out_dtype, sdt


def diag_scan(
    a: Tensor, b: Tensor, *, initial_state: Tensor | None = None, output_final_state: bool = False,
    backend: str = "auto", chunk_size: int | None = None, triton_config: dict | None = None,
) -> tuple[Tensor, Tensor | None]:  # fmt: skip
    """Signed diagonal linear recurrence h_t = a_t * h_{t-1} + b_t (elementwise), a_t in [-1, 1].

    Negative, zero and unit decays are exact: decays are multiplied, never divided or logged.

    Args:
        a: [B, T, ...] decays in [-1, 1] (checked unless value checks are off); any trailing dims.
        b: [B, T, ...] inputs, same shape as a. a and b may differ in float dtype; the output takes the
            promoted one.
        initial_state: [B, ...] h_{-1} in the state dtype (fp32, or fp64 for fp64 inputs); zeros if None.
        output_final_state: also return h_{T-1} [B, ...] in the state dtype.
        backend: "auto" (triton on CUDA for bf16/fp16/fp32, else torch) | "naive" (sequential loop, the oracle)
            | "torch" (chunked, hand-written backward) | "triton" (fused Triton kernels, fp32 accumulation; CUDA
            tensors, or CPU tensors under TRITON_INTERPRET=1; not for fp64).
        chunk_size: tokens per chunk of the "torch" backend (changes rounding only); None picks one from
            T, the number of lanes and the device (see ``scan.default_chunk_size``). Only for the torch backend.
        triton_config: tuning of the "triton" backend (only there), a dict of: block_t (steps per tile, default
            64), block_d (channels per tile, default 64, fewer for narrow or short batches), segment (steps per
            in-register segment of a tile, default 4), warps_fwd, warps_bwd (4), stages_fwd (3), stages_bwd (2).

    Returns:
        (h [B, T, ...] in the promoted input dtype, final state [B, ...] or None).
    """
    out_dtype, sdt = _check_diag(a, b, initial_state, "initial_state", with_time=True)
    name, config = choose_backend(backend, a.device, out_dtype, chunk_size=chunk_size, triton_config=triton_config,
                                  triton_keys=DIAG_KEYS)  # fmt: skip
    B, T = a.shape[:2]
    if name == "triton" and T == 0:
        name = "torch"  # nothing to launch; the torch path returns the initial state with its gradient wired
    if name == "naive":
        h, final = diag_scan_naive(a, b, initial_state, sdt)
    else:
        rest = a.shape[2:]
        D = math.prod(rest)
        init = None if initial_state is None else initial_state.reshape(B, D)
        if name == "triton":
            h, final = diag_scan_triton(a.reshape(B, T, D), b.reshape(B, T, D), init, **config)
        else:
            c = chunk_size or default_chunk_size(T, B * D, a.device)
            h, final = diag_scan_chunk(a.to(sdt).reshape(B, T, D), b.to(sdt).reshape(B, T, D), init, c)
        h, final = h.view(a.shape), final.view(B, *rest)
    return h.to(out_dtype), (final if output_final_state else None)


def diag_scan_step(a: Tensor, b: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One step of :func:`diag_scan`: h = a * state + b, continuing from its final state.

    a, b [B, ...]; state [B, ...] in the state dtype (zeros if None). Returns (h in the promoted input dtype,
    new state in the state dtype); both hold the same values.
    """
    out_dtype, sdt = _check_diag(a, b, state, "state", with_time=False)
    if state is None:
        state = a.new_zeros(a.shape, dtype=sdt)
    new = torch.addcmul(b.to(sdt), a.to(sdt), state)
    return new.to(out_dtype), new
