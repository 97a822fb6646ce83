"""The short causal depthwise convolution along time, with SiLU: the q/k/v (and Mamba's x) pre-mixing of the
DeltaNet family's layers, fused into one kernel each way.

    y_t = silu(bias + sum_{i < W} weight[:, i] * x_{t - W + 1 + i})     (x_s for s < 0 from the cache, else zeros)

:func:`short_conv` dispatches by ``backend``: "torch" (:func:`short_conv_torch`, the reference: W shifted
multiply-adds, any device and dtype), "triton" (one kernel forward, two backward, fp32 arithmetic, or fp64 for fp64
tensors; CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``) or "auto" ("triton" on CUDA for bf16 / fp16 /
fp32 when triton is installed, else "torch"). The fused backward keeps only x (the op's input, in its dtype) and
recomputes the pre-activation once; no fp32 copy and no pre-activation is stored (the backward's dp buffer, in dy's
dtype for 16-bit dy, lives only while it runs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import require_cu_seqlens, require_float, require_same_device, value_checks_enabled
from ._triton import cdiv, kernels_for, pow2
from .fused_norms import fused_backend
from .state_updates import states_in_place

_MODULE = f"{__package__}._short_conv_kernels"


def position_in_document(cu_seqlens: torch.Tensor, T: int) -> torch.Tensor:
    """cu_seqlens [N + 1] of a packed row of T tokens -> each token's position within its document, [T] long."""
    starts = cu_seqlens[:-1].long()
    lens = cu_seqlens[1:].long() - starts
    return torch.arange(T, device=cu_seqlens.device) - starts.repeat_interleave(lens, output_size=T)


def _new_cache(x: torch.Tensor, cache: torch.Tensor | None, W: int, cu_seqlens: torch.Tensor | None) -> torch.Tensor:
    """The W - 1 inputs before the next token: [B, C, W-1] (per document, [N, C, W-1], with ``cu_seqlens``)."""
    B, T, C = x.shape
    if cu_seqlens is not None:  # each document's last W - 1 inputs (zeros before its start)
        ends = cu_seqlens[1:].long().to(x.device)
        idx = ends[:, None] - torch.arange(W - 1, 0, -1, device=x.device)  # [N, W-1]
        inside = idx >= cu_seqlens[:-1].long().to(x.device)[:, None]
        return (x[0][idx.clamp_min(0)] * inside[..., None].to(x.dtype)).transpose(1, 2)
    if T >= W - 1:
        return x[:, T - (W - 1) :].transpose(1, 2)
    prev = x.new_zeros(B, C, W - 1) if cache is None else cache.to(x.dtype)
    return torch.cat([prev, x.transpose(1, 2)], 2)[:, :, T:]


def short_conv_torch(x, weight, bias=None, cache=None, activation: bool = True, cu_seqlens=None):
    """The reference (plain PyTorch, any device and dtype); arguments and result as :func:`short_conv`.
    Why W shifted multiply-adds rather than F.conv1d: at these widths (W = 4) cuDNN's depthwise kernels, and the
    transposes to [B, C, T] around them, cost several times more, its weight gradient above all."""
    B, T, C = x.shape
    W = weight.shape[1]
    w = weight.to(x.dtype)
    if cache is None:
        full = F.pad(x, (0, 0, W - 1, 0))
    else:
        full = torch.cat([cache.transpose(1, 2).to(x.dtype), x], dim=1)  # [B, W-1+T, C]
    offset = None if cu_seqlens is None else position_in_document(cu_seqlens, T)[None, :, None]
    y = x * w[:, W - 1] if bias is None else torch.addcmul(bias.to(x.dtype), x, w[:, W - 1])
    for i in range(W - 1):
        tap = full[:, i : i + T]
        if offset is not None:  # this tap looks W - 1 - i tokens back: only within the document
            tap = tap * (offset >= W - 1 - i).to(x.dtype)
        y = torch.addcmul(y, tap, w[:, i])
    new_cache = full[:, T:].transpose(1, 2) if cu_seqlens is None else _new_cache(x, None, W, cu_seqlens)
    return (F.silu(y) if activation else y), new_cache


def _tiles(C: int, W: int) -> tuple[int, int]:
    """(BT, BC) of the forward: 16 steps (at least W) x up to 128 channels (256-byte rows of bf16); an sm_90 compile
    of 4 warps takes 89 registers a thread (116 with packed documents), no spills."""
    return max(16, pow2(W)), min(128, max(16, pow2(C)))


def _bwd_tiles(C: int, W: int) -> tuple[int, int]:
    """(BT, BC) of the backward's first kernel (dp, dw, db): 32 steps (at least W) x up to 64 channels; dw's partial
    sums are then 1/32 of x's rows. An sm_90 compile of 4 warps takes 179 registers a thread (packed documents
    202; with a cache 255 and 200 bytes of spills). Measured on an H100 at [8, 2048, 3072] bf16 against 8-32 steps
    x 64-128 channels, 1-16 tiles a program, 2-8 warps: 0.59 ms for both backward kernels, the next best 0.65 (16
    tiles of 8 steps x 64, 2 warps), 8-step tiles with 128 channels 1.15-2.3 ms."""
    return max(32, pow2(W)), min(64, max(16, pow2(C)))


def _conv_fwd(x, w, bias, cache, pos, silu: bool, new_cache: torch.Tensor | None = None) -> torch.Tensor:
    """y [B, T, C] of contiguous x [B, T, C], w [C, W], cache [B, C, W-1] or None (and none when W = 1); with
    ``new_cache`` [B, C, W-1] (no ``pos``) the kernel also writes the new cache there."""
    B, T, C = x.shape
    W = w.shape[1]
    y = torch.empty_like(x)
    BT, BC = _tiles(C, W)
    if x.numel():
        kernels_for(x.device, _MODULE).short_conv_fwd_kernel[(cdiv(T, BT), cdiv(C, BC), B)](
            x, w, w if bias is None else bias, x if cache is None else cache, x if pos is None else pos, y,
            y if new_cache is None else new_cache, T, C, W=W, BT=BT, BC=BC, HAS_BIAS=bias is not None,
            HAS_CACHE=cache is not None, VARLEN=pos is not None, SILU=silu, F64=torch.float64 in (x.dtype, w.dtype),
            NEW_CACHE=new_cache is not None, IN_PLACE=new_cache is not None and new_cache is cache, num_warps=4,
        )  # fmt: skip
    return y


class ShortConvTritonFn(torch.autograd.Function):
    """(x [B, T, C], weight [C, W], bias [C] or None, cache [B, C, W-1] or None, pos [T] int32 or None, silu)
    -> y [B, T, C] in x's dtype."""

    @staticmethod
    def forward(ctx, x, weight, bias, cache, pos, silu):
        W = weight.shape[1]
        x, w = x.contiguous(), weight.contiguous()
        cache = None if cache is None or W == 1 else cache.contiguous()
        f64 = torch.float64 in (x.dtype, w.dtype)
        y = _conv_fwd(x, w, bias, cache, pos, silu)
        ctx.save_for_backward(x, w, bias, cache, pos)
        ctx.silu, ctx.f64, ctx.w_dtype = silu, f64, weight.dtype
        ctx.cache_dtype = None if cache is None else cache.dtype
        return y

    @staticmethod
    def backward(ctx, dy):
        x, w, bias, cache, pos = ctx.saved_tensors
        B, T, C = x.shape
        W = w.shape[1]
        need_dw, need_db = ctx.needs_input_grad[1], ctx.needs_input_grad[2] and bias is not None
        need_dc = ctx.needs_input_grad[3] and cache is not None
        BT, BC = _bwd_tiles(C, W)
        NT = cdiv(T, BT)
        acc = torch.float64 if ctx.f64 else torch.float32
        dev = x.device
        dx = torch.empty_like(x)
        # dy silu'(pre), once per step: in dy's dtype for 16-bit dy, as dx (stored in x's 16-bit dtype anyway) is
        # then its only reader (dw and db take their sums from the fp32 registers before the store; the cache's
        # gradient, rare, keeps the fp32 buffer)
        dp_dtype = acc if dy.dtype.itemsize > 2 or need_dc else dy.dtype
        dp = torch.empty(B, T, C, dtype=dp_dtype, device=dev)
        dw_part = torch.empty(B * NT if need_dw else 1, C, W, dtype=acc, device=dev)
        db_part = torch.empty(B * NT if need_db else 1, C, dtype=acc, device=dev)
        if x.numel():
            kernels = kernels_for(dev, _MODULE)
            kernels.short_conv_dpre_kernel[(NT, cdiv(C, BC), B)](
                x, w, w if bias is None else bias, x if cache is None else cache, x if pos is None else pos,
                dy.contiguous(), dp, dw_part, db_part, T, C, W=W, WP=pow2(W), BT=BT, BC=BC,
                HAS_BIAS=bias is not None, HAS_CACHE=cache is not None, VARLEN=pos is not None, SILU=ctx.silu,
                F64=ctx.f64, NEED_DW=need_dw, NEED_DB=need_db, num_warps=4,
            )  # fmt: skip
            BTx, BCx = _tiles(C, W)  # dx: the forward's tiles (same access pattern)
            kernels.short_conv_dx_kernel[(cdiv(T, BTx), cdiv(C, BCx), B)](
                dp, w, x if pos is None else pos, dx, T, C, W=W, BT=BTx, BC=BCx, VARLEN=pos is not None,
                F64=ctx.f64, num_warps=4,
            )  # fmt: skip
        dw = dw_part.sum(0).to(ctx.w_dtype) if need_dw else None
        db = db_part.sum(0).to(bias.dtype) if need_db else None
        dc = None
        if need_dc:  # cache column j (step j - W + 1) is read by taps j - u of steps u = 0 .. j
            dc = torch.zeros(B, C, W - 1, dtype=acc, device=dev)
            wt = w.to(acc)
            for j in range(W - 1):
                for u in range(min(j, T - 1) + 1):
                    dc[:, :, j] += wt[:, j - u] * dp[:, u, :]
            dc = dc.to(ctx.cache_dtype)
        return dx, dw, db, dc, None, None


@torch.compiler.disable  # a Triton launch inside an autograd.Function: eager inside compiled graphs
def _short_conv_triton(x, weight, bias, cache, activation, cu_seqlens):
    B, T, C = x.shape
    W = weight.shape[1]
    tracked = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias, cache))
    if cu_seqlens is None and W > 1 and not tracked:
        # no graph to record (decoding): the kernel writes the new cache too, and a step is one launch
        cache = None if cache is None else cache.contiguous()
        in_place = T <= _tiles(C, W)[0] and states_in_place(cache, x.dtype)  # one time tile: reads, then writes
        new = cache if in_place else torch.empty(B, C, W - 1, dtype=x.dtype, device=x.device)
        return _conv_fwd(x.contiguous(), weight.contiguous(), bias, cache, None, bool(activation), new), new
    pos = None if cu_seqlens is None else position_in_document(cu_seqlens.to(x.device), T).to(torch.int32)
    y = ShortConvTritonFn.apply(x, weight, bias, cache, pos, bool(activation))
    return y, _new_cache(x, cache, W, cu_seqlens)


def short_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, cache: torch.Tensor | None = None, *,
    activation: bool = True, cu_seqlens: torch.Tensor | None = None, backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Causal depthwise convolution along time in the [B, T, C] layout, optionally followed by SiLU.

    x [B, T, C]; weight [C, W]; bias [C] or None; cache [B, C, W-1] (the W-1 inputs before x) or None (zeros).
    Returns (y [B, T, C] in x's dtype, new cache [B, C, W-1] in x's dtype: the last W - 1 inputs), differentiable
    in x, weight, bias and cache. y_t = act(bias + sum_i weight[:, i] * x_{t - W + 1 + i}).
    With ``cu_seqlens`` [N + 1] (x a packed row, B = 1, no cache): no window reaches back past its document's
    start, and the new cache is each document's last W - 1 inputs, [N, C, W-1].
    ``backend``: "auto" (triton on CUDA for bf16 / fp16 / fp32, else torch), "torch" or "triton" (module docstring).
    """
    require_float("x", x)
    require_float("weight", weight)
    if x.dim() != 3:
        raise ValueError(f"x must have shape [B, T, C], got {list(x.shape)}")
    B, T, C = x.shape
    if weight.dim() != 2 or weight.shape[0] != C or weight.shape[1] < 1:
        raise ValueError(f"weight must have shape [C, W] = [{C}, W >= 1], got {list(weight.shape)}")
    W = weight.shape[1]
    if bias is not None:
        require_float("bias", bias)
        if bias.shape != (C,):
            raise ValueError(f"bias must have shape [C] = [{C}], got {list(bias.shape)}")
    if cache is not None:
        require_float("cache", cache)
        if cache.shape != (B, C, W - 1):
            raise ValueError(f"cache must have shape [B, C, W-1] = [{B}, {C}, {W - 1}], got {list(cache.shape)}")
    if cu_seqlens is not None:
        if cache is not None:
            raise ValueError("cu_seqlens with a cache: continue packed documents one by one")
        if value_checks_enabled():
            require_cu_seqlens(cu_seqlens, B, T)
        elif B != 1:
            raise ValueError(f"with cu_seqlens the batch size must be 1 (sequences packed along T), got B = {B}")
    require_same_device(x=x, weight=weight, bias=bias, cache=cache)
    if fused_backend(backend, x) == "torch":
        return short_conv_torch(x, weight, bias, cache, activation, cu_seqlens)
    return _short_conv_triton(x, weight, bias, cache, activation, cu_seqlens)
