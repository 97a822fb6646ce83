"""The sLSTM recurrence as a tensor function: :func:`slstm_scan` (Triton on CUDA, the plain loop elsewhere)."""

from __future__ import annotations

import torch

from .._checks import require_float, require_same_device, require_shape, resolve_backend
from ..backends import available_backends
from .naive import SLSTMState, slstm_cell, slstm_scan_naive, zero_state

__all__ = ["SLSTMState", "slstm_cell", "slstm_scan", "zero_state"]

# auto runs the kernels up to this head dim; above, r's blocks spill (docs/kernels.md, "The sLSTM kernels")
MAX_FAST_K = 64


def slstm_scan(wx: torch.Tensor, r: torch.Tensor, *, state: SLSTMState | None = None,
               output_final_state: bool = False, backend: str = "auto"):  # fmt: skip
    """sLSTM over a sequence (math in ``ops.slstm.naive``).

    Args:
        wx: [B, T, 4, H, K] gate pre-activations from the input (W x_t + b), gates (i, f, z, o).
        r: [H, K, 4, K] recurrent weights, block-diagonal over the H heads.
        state: (h, c, n, m), each [B, H, K], or None (zeros).
        backend: "naive" (the loop, autograd through it), "triton" (one fused launch each way; fp32, no
            initial or final state; CUDA, or CPU tensors under TRITON_INTERPRET=1), or "auto": triton for fp32
            CUDA inputs without state and head dims K <= 64 (above, its registers spill), else naive.
    Returns:
        (h [B, T, H, K], final state or None).
    """
    require_float("wx", wx)
    require_float("r", r)
    if wx.dim() != 5 or wx.shape[2] != 4:
        raise ValueError(f"wx must have shape [B, T, 4, H, K], got {list(wx.shape)}")
    B, _, _, H, K = wx.shape
    require_shape("r", r, (H, K, 4, K), "[H, K, 4, K]")
    if r.dtype != wx.dtype:
        raise TypeError(f"r must have wx's dtype {wx.dtype}, got {r.dtype}")
    if state is not None:
        for name, s in zip("hcnm", state, strict=True):
            require_shape(f"state[{name!r}]", s, (B, H, K), "[B, H, K]")
    dev = require_same_device(wx=wx, r=r)
    stateless = state is None and not output_final_state
    available = available_backends(dev, wx.dtype, names=("naive", "triton"))
    if backend == "triton" and not stateless:
        raise ValueError("backend='triton' runs without initial or final state; use backend='naive' for those")
    fast = stateless and dev.type == "cuda" and wx.dtype == torch.float32 and K <= MAX_FAST_K
    auto = ["triton", "naive"] if fast else ["naive"]
    if resolve_backend(backend, available, dev, auto) == "triton":
        from .triton import slstm_scan_triton

        return slstm_scan_triton(wx, r), None
    h, st = slstm_scan_naive(wx, r, state)
    return h, (st if output_final_state else None)
