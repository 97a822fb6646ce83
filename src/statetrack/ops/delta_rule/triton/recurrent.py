"""Fused recurrent delta rule (forward only): one program per (sequence, head, V-block) walks the tokens with its
state slice in registers. For decoding (T = 1 per call) and short prefills, where a chunk's setup does not pay."""

from __future__ import annotations

import torch

from ._loader import kernels_for
from .chunk import _cdiv, _pow2


def delta_rule_recurrent_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    log_decay: torch.Tensor | None,
    scale: float,
    initial_state: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as ``delta_rule_triton`` (normalised layout), without gradients. Returns (o [N, T, H, V] in
    q's dtype, final state fp32 [N, H, K, V])."""
    if q.dtype not in (torch.bfloat16, torch.float16, torch.float32):
        raise TypeError(f"the triton backend takes bf16, fp16 or fp32 inputs, got {q.dtype}")
    q, k, v, beta = (x.contiguous() for x in (q, k, v, beta))
    g = None if log_decay is None else log_decay.contiguous()
    h0 = None if initial_state is None else initial_state.contiguous()
    N, T, n_h, H, K = k.shape
    V = v.shape[-1]
    BK = max(16, _pow2(K))
    BV = min(max(16, _pow2(V)), max(16, 4096 // BK))
    o = torch.empty(N, T, H, V, dtype=q.dtype, device=q.device)
    ht = torch.empty(N, H, K, V, dtype=torch.float32, device=q.device)
    kernels_for(q.device).recurrent_fwd_kernel[(_cdiv(V, BV), N * H)](
        q,
        k,
        v,
        beta,
        ht if g is None else g,
        ht if h0 is None else h0,
        o,
        ht,
        float(scale),
        T,
        H=H,
        K=K,
        V=V,
        NH=n_h,
        BK=BK,
        BV=BV,
        USE_G=g is not None,
        USE_H0=h0 is not None,
        STORE_HT=True,
        num_warps=4 if BK * BV >= 4096 else 2,
    )
    return o, ht
