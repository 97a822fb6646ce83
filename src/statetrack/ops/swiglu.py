"""SwiGLU's activation on a fused gate/up projection: gate_up [..., 2H] -> silu(gate) * up [..., H], where gate is
the first half of the last dim and up the second (the layout of one ``Linear(D, 2H)``).

"torch" is the reference (two elementwise kernels, silu(gate) kept for the backward); "triton" is liger-kernel's
fused gate/up kernel (one launch each way, only gate_up kept: the backward recomputes silu). That kernel computes in
fp32, so "auto" takes it on CUDA for bf16 / fp16 / fp32 inputs and the reference elsewhere (fp64 stays exact).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .fused_norms import fused_backend


@functools.cache
def _liger_fn():
    """liger-kernel's fused gate/up SwiGLU autograd Function, or None where liger-kernel is not installed."""
    try:
        from liger_kernel.ops.swiglu import LigerFusedGateUpSiLUMulFunction
    except ImportError:
        return None
    return LigerFusedGateUpSiLUMulFunction


def swiglu_torch(gate_up: torch.Tensor) -> torch.Tensor:
    """The reference: silu(gate) * up."""
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


@torch.compiler.disable  # a Triton launch inside an autograd.Function: eager inside compiled graphs
def _swiglu_liger(gate_up: torch.Tensor) -> torch.Tensor:
    # as rows [M, 2H]: liger 0.8.5's backward hands back the gradient of a [..., 2H] input flattened to rows
    rows = gate_up.reshape(-1, gate_up.shape[-1]).contiguous()
    return _liger_fn().apply(rows).view(*gate_up.shape[:-1], gate_up.shape[-1] // 2)


def swiglu(gate_up: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """silu(gate) * up of gate_up [..., 2H] -> [..., H] in gate_up's dtype, differentiable in gate_up.
    ``backend``: "auto" (liger-kernel's fused kernel on CUDA for bf16 / fp16 / fp32 when installed, else torch),
    "torch" or "triton" (the fused kernel; needs liger-kernel and CUDA tensors, or TRITON_INTERPRET=1)."""
    if gate_up.shape[-1] % 2:
        raise ValueError(f"gate_up's last dim must be even (gate and up halves), got {gate_up.shape[-1]}")
    chosen = fused_backend(backend, gate_up)
    if backend == "triton" and (_liger_fn() is None or gate_up.dtype == torch.float64):
        why = "liger-kernel installed" if _liger_fn() is None else "bf16 / fp16 / fp32 gate_up (it computes in fp32)"
        raise ValueError(f"backend='triton' for swiglu needs {why}")
    if chosen == "torch" or _liger_fn() is None or gate_up.numel() == 0:
        return swiglu_torch(gate_up)
    return _swiglu_liger(gate_up)
