"""Row norms of the DeltaNet family's layer, each one read and one write per row: the L2 normalisation of q and k
(per head) and the output RMSNorm, optionally gated by SiLU.

- :func:`l2_normalize`: y = x / |x| (or x / sqrt(|x|^2 + eps)) over the last dim.
- :func:`rms_norm_gated`: y = x / sqrt(mean(x^2) + eps) * weight (* silu(gate)) over the last dim.

Each has ``backend``: "torch" (the reference: plain PyTorch ops, any device and dtype), "triton" (one fused kernel
forward and one backward, arithmetic in fp32, or fp64 for fp64 tensors; CUDA tensors, or CPU tensors under
``TRITON_INTERPRET=1``), or "auto": "triton" on CUDA for bf16 / fp16 / fp32 when triton is installed, else "torch".
The fused backward keeps only what the math needs, in the inputs' dtypes: the L2 norm its output (which the delta
rule keeps anyway) and one fp32 factor per row; the RMSNorm its inputs and one fp32 factor per row. No fp32 copy
of a bf16 activation is saved, where the torch path saves several.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import require_float, require_same_device
from ._triton import cdiv, kernels_for, pow2, triton_installed
from .backends import triton_runs_on

_MODULE = f"{__package__}._fused_norm_kernels"
#: the widest row the kernels take (a row lives in registers)
MAX_ROW = 16384
#: F.normalize's floor on |x| (its ``eps``), used when ``eps`` is None
NORMALIZE_FLOOR = 1e-12
BACKENDS = ("auto", "torch", "triton")


def fused_backend(backend: str, x: torch.Tensor, what: str = "backend") -> str:
    """The backend a fused layer op runs: ``backend`` ("torch" / "triton") as given (checked), or for "auto"
    "triton" on CUDA for bf16 / fp16 / fp32 tensors when triton is installed, else "torch"."""
    if backend not in BACKENDS:
        raise ValueError(f"{what} must be one of {list(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        ok = x.device.type == "cuda" and x.dtype != torch.float64 and triton_runs_on(x.device, x.dtype)
        return "triton" if ok else "torch"
    if backend == "triton" and not (triton_installed() and triton_runs_on(x.device)):
        raise ValueError(
            f"{what}='triton' needs triton and CUDA tensors (or TRITON_INTERPRET=1 for {x.device} tensors)"
        )
    return backend


def _acc_dtype(*ts: torch.Tensor | None) -> torch.dtype:
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in ts) else torch.float32


def _check_row(name: str, D: int) -> None:
    if D > MAX_ROW:
        raise ValueError(f"the triton backend takes rows of at most {MAX_ROW} elements; {name} has {D}")


def _blocks(D: int) -> tuple[int, int, int]:
    """(BD, BR, warps): the row padded to a power of two, rows per program (about 2048 elements a program: at
    4096 an sm_90 compile of the gated RMSNorm backward spills; at 16 rows of 128 it takes 152 registers a thread,
    the L2 backward 112)."""
    BD = pow2(D)
    BR = max(1, min(128, 2048 // BD))
    return BD, BR, 4 if BD * BR <= 2048 else 8


def _row_view(x: torch.Tensor) -> torch.Tensor:
    """x [..., D] as a view [M0, M1, D] with unit stride along D (a copy only when no such view exists): q and k
    straight from the columns of the fused projection have strides (T C, C, K, 1) over [B, T, H, K]."""
    if x.stride(-1) != 1:
        x = x.contiguous()
    lead, D = x.shape[:-1], x.shape[-1]
    for k in range(len(lead), -1, -1):
        try:
            return x.view(math.prod(lead[:k]), math.prod(lead[k:]), D)
        except RuntimeError:
            continue
    return x.contiguous().view(-1, 1, D)  # pragma: no cover - k = len(lead) works for contiguous x


# ------------------------------------------------------------------------------------------------------- L2 norm
def l2_normalize_torch(x: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """The reference: x / max(|x|, 1e-12) (F.normalize) for ``eps`` None, else x / sqrt(|x|^2 + eps)."""
    if eps is None:
        return F.normalize(x, p=2, dim=-1)
    return x * torch.rsqrt(x.square().sum(-1, keepdim=True) + eps)


class L2NormTritonFn(torch.autograd.Function):
    """x [..., D] -> y [..., D] (contiguous, x's dtype); saves y and r = 1 / |x| per row."""

    @staticmethod
    def forward(ctx, x, eps):
        v = _row_view(x)
        M0, M1, D = v.shape
        n = M0 * M1
        clamp = eps is None
        e = NORMALIZE_FLOOR if clamp else float(eps)
        acc = _acc_dtype(x)
        y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        r = torch.empty(n, dtype=acc, device=x.device)
        BD, BR, warps = _blocks(D)
        if n:
            kernels_for(x.device, _MODULE).l2norm_fwd_kernel[(cdiv(n, BR),)](
                v, y, r, n, M1, v.stride(0), v.stride(1), D, EPS=e,
                BR=BR, BD=BD, CLAMP=clamp, F64=acc == torch.float64, num_warps=warps,
            )  # fmt: skip
        ctx.save_for_backward(y, r)
        ctx.e, ctx.clamp = e, clamp
        return y

    @staticmethod
    def backward(ctx, dy):
        y, r = ctx.saved_tensors
        D = y.shape[-1]
        n = r.numel()
        dy = dy.contiguous()
        dx = torch.empty_like(y)
        BD, BR, warps = _blocks(D)
        if n:
            kernels_for(y.device, _MODULE).l2norm_bwd_kernel[(cdiv(n, BR),)](
                y, r, dy, dx, n, D, EPS=ctx.e,
                BR=BR, BD=BD, CLAMP=ctx.clamp, F64=r.dtype == torch.float64, num_warps=warps,
            )  # fmt: skip
        return dx, None


@torch.compiler.disable  # a Triton launch inside an autograd.Function: eager inside compiled graphs
def _l2_triton(x, eps):
    _check_row("x", x.shape[-1])
    return L2NormTritonFn.apply(x, eps)


def l2_normalize(x: torch.Tensor, eps: float | None = None, *, backend: str = "auto") -> torch.Tensor:
    """L2 normalisation over the last dim (per head, for q and k of shape [B, T, H, K]).

    y = x / max(|x|, 1e-12) when ``eps`` is None (as F.normalize), else y = x / sqrt(|x|^2 + eps) (fla's kernels use
    eps = 1e-6). x [..., D], any strides (the triton path reads strided rows, e.g. q's columns of a fused q/k/v
    projection, without a copy). Returns y [..., D] in x's dtype, differentiable in x.
    ``backend``: "auto" (triton on CUDA for bf16 / fp16 / fp32, else torch), "torch" or "triton" (module docstring).
    """
    require_float("x", x)
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 <= eps < math.inf):
        raise ValueError(f"eps must be None or a finite float >= 0, got {eps!r}")
    if fused_backend(backend, x) == "torch":
        return l2_normalize_torch(x, eps)
    return _l2_triton(x, eps)


# ------------------------------------------------------------------------------------------------------- RMSNorm
def rms_norm_gated_torch(
    x: torch.Tensor, weight: torch.Tensor, gate: torch.Tensor | None = None, eps: float = 1e-6,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:  # fmt: skip
    """The reference: fp32 statistics and gain whatever x's dtype (F.rms_norm), rounded to x's dtype, then times
    silu(gate) if given; in ``out_dtype`` if given (rounded once, without a gate)."""
    ft = torch.promote_types(x.dtype, torch.float32)
    y = F.rms_norm(x.to(ft), (x.shape[-1],), weight.to(ft), eps)
    if gate is not None:
        y = y.to(x.dtype) * F.silu(gate)
        return y if out_dtype is None else y.to(out_dtype)
    return y.to(x.dtype if out_dtype is None else out_dtype)


class RMSNormGatedTritonFn(torch.autograd.Function):
    """(x [..., D], weight [D], gate [..., D] or None, eps, out_dtype or None) -> y [..., D]; saves x, gate and r
    per row."""

    @staticmethod
    def forward(ctx, x, weight, gate, eps, out_dtype):
        D = x.shape[-1]
        x2 = x.reshape(-1, D)
        if x2.stride(-1) != 1 or x2.stride(0) != D:
            x2 = x2.contiguous()
        g2 = None if gate is None else gate.reshape(-1, D).contiguous()
        if out_dtype is None:
            out_dtype = x.dtype if gate is None else torch.promote_types(x.dtype, gate.dtype)
        w = weight.contiguous()
        n = x2.shape[0]
        acc = _acc_dtype(x, gate)
        y = torch.empty(n, D, dtype=out_dtype, device=x.device)
        r = torch.empty(n, dtype=acc, device=x.device)
        BD, BR, warps = _blocks(D)
        if n:
            kernels_for(x.device, _MODULE).rmsnorm_fwd_kernel[(cdiv(n, BR),)](
                x2, x2 if g2 is None else g2, w, y, r, n, D, EPS=float(eps),
                BR=BR, BD=BD, HAS_GATE=g2 is not None, F64=acc == torch.float64, num_warps=warps,
            )  # fmt: skip
        ctx.save_for_backward(x2, g2, w, r)
        ctx.shape, ctx.x_dtype, ctx.w_dtype = x.shape, x.dtype, weight.dtype
        ctx.g_dtype = None if gate is None else gate.dtype
        return y.view(x.shape)

    @staticmethod
    def backward(ctx, dy):
        x2, g2, w, r = ctx.saved_tensors
        n, D = x2.shape
        dy = dy.reshape(n, D).contiguous()
        need_dw = ctx.needs_input_grad[1]
        BD, BR, warps = _blocks(D)
        P = cdiv(n, BR)
        dx = torch.empty(n, D, dtype=ctx.x_dtype, device=x2.device)
        dg = None if g2 is None else torch.empty(n, D, dtype=ctx.g_dtype, device=x2.device)
        dw_part = torch.empty(P if need_dw else 1, D, dtype=r.dtype, device=x2.device)
        if n:
            kernels_for(x2.device, _MODULE).rmsnorm_bwd_kernel[(P,)](
                x2, x2 if g2 is None else g2, w, r, dy, dx, dx if dg is None else dg, dw_part, n, D,
                BR=BR, BD=BD, HAS_GATE=g2 is not None, NEED_DW=need_dw, F64=r.dtype == torch.float64,
                num_warps=warps,
            )  # fmt: skip
        dw = None
        if need_dw:
            dw = (dw_part.sum(0) if n else torch.zeros(D, dtype=r.dtype, device=x2.device)).to(ctx.w_dtype)
        return dx.view(ctx.shape), dw, (None if dg is None else dg.view(ctx.shape)), None, None


@torch.compiler.disable  # a Triton launch inside an autograd.Function: eager inside compiled graphs
def _rms_triton(x, weight, gate, eps, out_dtype):
    _check_row("x", x.shape[-1])
    return RMSNormGatedTritonFn.apply(x, weight, gate, eps, out_dtype)


def rms_norm_gated(
    x: torch.Tensor, weight: torch.Tensor, gate: torch.Tensor | None = None, eps: float = 1e-6, *,
    backend: str = "auto", out_dtype: torch.dtype | None = None,
) -> torch.Tensor:  # fmt: skip
    """RMSNorm over the last dim with a gain, optionally gated: y = x / sqrt(mean(x^2) + eps) * weight * silu(gate).

    x [..., D]; weight [D] (fp32 under autocast, as the module's parameter); gate [..., D] or None. Statistics and
    gain in fp32 (fp64 for fp64 inputs). Returns y [..., D] in x's dtype (promoted with gate's), or in
    ``out_dtype`` (e.g. bf16 from an fp32 residual stream under autocast: the one copy the projections read, made
    by the norm itself), differentiable in x, weight and gate. The torch path rounds the norm to x's dtype before
    the gate (as the separate ops do); the fused one rounds once, at the end.
    ``backend``: "auto" (triton on CUDA for bf16 / fp16 / fp32, else torch), "torch" or "triton" (module docstring).
    """
    require_float("x", x)
    require_float("weight", weight)
    if weight.dim() != 1 or weight.shape[0] != x.shape[-1]:
        raise ValueError(f"weight must have shape [D] = [{x.shape[-1]}] (x's last dim), got {list(weight.shape)}")
    if gate is not None:
        require_float("gate", gate)
        if gate.shape != x.shape:
            raise ValueError(f"gate must have x's shape {list(x.shape)}, got {list(gate.shape)}")
    require_same_device(x=x, weight=weight, gate=gate)
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 <= eps < math.inf:
        raise ValueError(f"eps must be a finite float >= 0, got {eps!r}")
    if out_dtype is not None and not (isinstance(out_dtype, torch.dtype) and out_dtype.is_floating_point):
        raise ValueError(f"out_dtype must be a floating torch.dtype or None, got {out_dtype!r}")
    if fused_backend(backend, x) == "torch":
        return rms_norm_gated_torch(x, weight, gate, eps, out_dtype)
    return _rms_triton(x, weight, gate, eps, out_dtype)
