"""The sLSTM recurrence on Triton: an autograd Function over one forward and one backward launch
(kernels in ``kernels.py``). Takes fp32 wx [B, T, 4, H, K] and r [H, K, 4, K]; returns h [B, T, H, K] (fp32)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..._triton import cdiv, kernels_for, loop_bound, pow2

_MODULE = f"{__package__}.kernels"
BB = 16  # batch rows per program (tl.dot needs >= 16)


def launch_warps(BK: int) -> int:
    """Warps of a program: the head's four [BK, BK] fp32 blocks of r live in registers (no spills on sm_90 up to
    BK = 64 with 8 warps: docs/kernels.md, "The sLSTM kernels")."""
    return 8 if BK >= 64 else 4


def _launch_shape(wx: torch.Tensor) -> tuple:
    """(B, T, H, K, BK, grid, warps)."""
    B, T, _, H, K = wx.shape
    BK = max(16, pow2(K))
    return B, T, H, K, BK, (cdiv(B, BB), H), launch_warps(BK)


class SLSTMScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, wx: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        kern = kernels_for(wx.device, _MODULE)
        wx, r = wx.contiguous(), r.contiguous()
        B, T, H, K, BK, grid, warps = _launch_shape(wx)
        h = torch.empty(B, T, H, K, device=wx.device, dtype=torch.float32)
        save = any(ctx.needs_input_grad)
        c, n, m = (torch.empty_like(h) for _ in range(3)) if save else (h, h, h)
        kern.slstm_fwd_kernel[grid](wx, r, h, c, n, m, B, T, H=H, K=K, BB=BB, BK=BK, T_I=loop_bound(T), SAVE=save,
                                    num_warps=warps)  # fmt: skip
        if save:
            ctx.save_for_backward(wx, r, h, c, n, m)
        return h

    @staticmethod
    def backward(ctx, dh: torch.Tensor):
        wx, r, h, c, n, m = ctx.saved_tensors
        kern = kernels_for(wx.device, _MODULE)
        B, T, H, K, BK, grid, warps = _launch_shape(wx)
        dwx = torch.empty_like(wx)
        kern.slstm_bwd_kernel[grid](wx, r, h, c, n, m, dh.float().contiguous(), dwx, B, T, H=H, K=K, BB=BB, BK=BK,
                                    T_I=loop_bound(T), num_warps=warps)  # fmt: skip
        h_prev = F.pad(h[:, :-1], (0, 0, 0, 0, 1, 0))  # h_{t-1}, zero before the first step
        dr = torch.einsum("bthk,btghj->hkgj", h_prev, dwx)
        return dwx, dr


@torch.compiler.disable  # compiled models launch the kernels eagerly (inductor would re-trace the Triton code)
def slstm_scan_triton(wx: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """wx [B, T, 4, H, K] fp32, r [H, K, 4, K] fp32 -> h [B, T, H, K] fp32 (zero initial state)."""
    if wx.dtype != torch.float32 or r.dtype != torch.float32:
        raise TypeError(f"the triton sLSTM takes fp32 wx and r, got {wx.dtype} and {r.dtype}")
    return SLSTMScan.apply(wx, r)
