"""Fused recurrent delta rule on Triton, with its backward: the fast path for short sequences and decoding.

One forward walk over the tokens (keeping r = v - S^T k when gradients are needed), and one backward launch that
walks back (dv, dbeta, part of dk, d initial_state) and forward again (dq, the rest of dk). Kernels and math:
``kernels_recurrent.py``. Varlen ``cu_seqlens`` is native: one program per (sequence, head, V-block).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from ..._triton import cdiv, kernels_for, pow2, require_kernel_dtypes
from ...prefix_sum import prefix_sum
from .launch import check_tuning, contiguous

_MODULE = f"{__package__}.kernels_recurrent"

# Sub-steps (tokens x n_h) up to which the token-by-token kernels beat the chunked ones on an H100, and up to
# which they still do when there are enough (sequence, head) programs to fill the GPU; the measurements behind
# them are in docs/kernels.md, "Which path runs".
RECURRENT_MAX_STEPS = 256
RECURRENT_MAX_STEPS_WIDE = 1024
WIDE_PROGRAMS = 1024
BLOCK_T = 8  # tokens a block, by default
TUNING = ("BT", "BV", "warps")  # the keys of delta_rule(triton_config=...) for algorithm="recurrent"


def prefers_recurrent(steps: int, K: int, programs: int = 1) -> bool:
    """Whether ``algorithm="auto"`` of the triton backend runs sequences of ``steps`` sub-steps with key dim K
    token by token, given ``programs`` = sequences x heads: up to RECURRENT_MAX_STEPS sub-steps, or up to
    RECURRENT_MAX_STEPS_WIDE with at least WIDE_PROGRAMS programs; never for K > 256."""
    if K > 256:
        return False
    return steps <= RECURRENT_MAX_STEPS or (programs >= WIDE_PROGRAMS and steps <= RECURRENT_MAX_STEPS_WIDE)


@dataclass(frozen=True)
class Blocks:
    """The state slice [BK, BV] a program keeps in registers (BK: all of K, padded), BT tokens whose inputs are
    loaded at once (the kernels pick rows out of registers), and warps per program."""

    BK: int
    BV: int
    BT: int
    warps: int


def make_blocks(K: int, V: int, programs: int, tuning: dict | None = None) -> Blocks:
    """``_make_blocks``, remembered per shape and tuning (it runs on every call, on the host's hot path)."""
    try:
        return _cached_blocks(K, V, programs, tuple(sorted((tuning or {}).items())))
    except (TypeError, AttributeError):  # not a dict, or a value that cannot be hashed: checked (refused) uncached
        return _make_blocks(K, V, programs, tuning)


@functools.lru_cache(maxsize=512)
def _cached_blocks(K: int, V: int, programs: int, key: tuple) -> Blocks:
    return _make_blocks(K, V, programs, dict(key))


def _make_blocks(K: int, V: int, programs: int, tuning: dict | None = None) -> Blocks:
    """Blocks for ``programs`` = sequences x heads; ``tuning``: settings of TUNING to use as given. The state slice
    lives in as few warps as fit it: a step's reductions then stay inside a warp, and many small programs share an
    SM. V is split further when there are few (sequence, head) programs to fill the GPU (V-blocks are independent;
    only dq/dk partials add up). H100 sweep (docs/kernels.md, "Which path runs"): 1 warp and BV = 32 were best at
    D = 32 and 64, 2 and 4 warps up to 4x slower; 8 tokens a block beat 16 and 32."""
    BK = max(16, pow2(K))
    if BK > 256:
        raise ValueError(f"the triton backend takes key dims up to 256, got K = {K}")
    tuning = dict(tuning or {})
    check_tuning(tuning, TUNING, "recurrent")
    BV = min(max(16, pow2(V)), max(16, 2048 // BK))
    while BV > 16 and programs * cdiv(V, BV) < 512:
        BV //= 2
    BV = tuning.get("BV", BV)
    return Blocks(BK=BK, BV=BV, BT=tuning.get("BT", BLOCK_T), warps=tuning.get("warps", max(1, BK * BV // 2048)))


def gate_grad(w: torch.Tensor, h0dh0: torch.Tensor | None, cu_seqlens: torch.Tensor | None) -> torch.Tensor:
    """d log_decay [N, T, H] from w [N, T, H] = sum_j v_tj . dv_tj - q_t . dq_t and <h0, dh0> [NS, H].

    Why no walk is needed: the state is linear in (h0, v), so scaling h0 and every v before token t by c scales
    S_{t-1} and the outputs before t by c, which is what scaling g_t by c does downstream. Differentiating at
    c = 1: dL/dlog g_t = <h0, dh0> + sum_{s < t} (v_s . dv_s - o_s . do_s), and o_s . do_s = q_s . dq_s.
    """
    cs = prefix_sum(w, 1) - w  # exclusive prefix sums along time (torch.cumsum, or deterministic: prefix_sum)
    if cu_seqlens is None:
        return cs if h0dh0 is None else cs + h0dh0[:, None]
    lens = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    seq = torch.repeat_interleave(torch.arange(len(lens), device=w.device), lens, output_size=w.shape[1])
    start = cs[0, cu_seqlens[:-1].long().clamp_max(w.shape[1] - 1)]  # [NS, H]; empty sequences own no rows
    out = cs[0] - start[seq]
    if h0dh0 is not None:
        out = out + h0dh0[seq]
    return out[None]


def _shapes(blocks: Blocks, H: int, K: int, V: int, n_h: int) -> dict:
    """The compile-time shapes both kernels take (BR: sub-step rows of a block, a power of two)."""
    return dict(H=H, K=K, V=V, NH=n_h, BK=blocks.BK, BV=blocks.BV, BT=blocks.BT, BR=pow2(blocks.BT * n_h))


class _Recurrent(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, beta, g, h0, scale, cu, grad, blocks: Blocks, final_state=None):
        N, T, n_h, H, K = k.shape
        V = v.shape[-1]
        NS = N if cu is None else cu.numel() - 1
        dev = q.device
        o = torch.empty(N, T, H, V, dtype=q.dtype, device=dev)
        ht = torch.empty(NS, H, K, V, dtype=torch.float32, device=dev) if final_state is None else final_state
        r = torch.empty(N, T, n_h, H, V, dtype=torch.float32, device=dev) if grad else ht
        kernels_for(dev, _MODULE).recurrent_fwd_kernel[(cdiv(V, blocks.BV), NS * H)](
            q, k, v, beta, ht if g is None else g, ht if h0 is None else h0, ht if cu is None else cu,
            o, ht, r, float(scale), T, **_shapes(blocks, H, K, V, n_h), USE_G=g is not None, USE_H0=h0 is not None,
            USE_CU=cu is not None, STORE_R=grad, num_warps=blocks.warps,
        )  # fmt: skip
        if grad:
            ctx.save_for_backward(q, k, v, beta, g, h0, cu, r)
            ctx.scale, ctx.blocks = scale, blocks
            ctx.set_materialize_grads(False)  # an unused final state (the usual case) costs no zero tensor
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):
        q, k, v, beta, g, h0, cu, r = ctx.saved_tensors
        blocks = ctx.blocks
        N, T, n_h, H, K = k.shape
        V = v.shape[-1]
        NS = N if cu is None else cu.numel() - 1
        NV = cdiv(V, blocks.BV)
        dev = q.device
        f32 = dict(dtype=torch.float32, device=dev)
        dq = torch.empty(NV, N, T, H, K, **f32)
        dk = torch.empty(NV, N, T, n_h, H, K, **f32)
        db = torch.empty(NV, N, T, n_h, H, **f32)
        dv = torch.empty(N, T, n_h, H, V, **f32)
        dh0 = torch.empty(NS, H, K, V, **f32) if h0 is not None else dv
        do = torch.zeros(N, T, H, V, dtype=q.dtype, device=dev) if do is None else do.contiguous()
        kernels_for(dev, _MODULE).recurrent_bwd_kernel[(NV, NS * H)](
            q, k, beta, dv if g is None else g, dv if h0 is None else h0, dv if cu is None else cu, r,
            do, dv if dht is None else dht.contiguous(), dq, dk, dv, db, dh0, float(ctx.scale), T, N * T,
            **_shapes(blocks, H, K, V, n_h), USE_G=g is not None, USE_H0=h0 is not None, USE_CU=cu is not None,
            USE_DHT=dht is not None, num_warps=blocks.warps,
        )  # fmt: skip
        dq, dk, db = (x[0] if NV == 1 else x.sum(0) for x in (dq, dk, db))
        dg = None
        if g is not None:
            w = (v.float() * dv).sum((2, 4)) - (q.float() * dq).sum(-1)
            h0dh0 = None if h0 is None else (h0 * dh0).sum((2, 3))
            dg = gate_grad(w, h0dh0, cu).to(g.dtype)
        return (
            dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), db.to(beta.dtype), dg,
            None if h0 is None else dh0, None, None, None, None, None,
        )  # fmt: skip


@torch.compiler.disable  # compiled models launch the kernels eagerly (inductor would re-trace the Triton code)
def delta_rule_recurrent_triton(
    q, k, v, beta, log_decay, scale, initial_state, cu_seqlens=None, *, config=None, final_state=None
):
    """The delta rule token by token, differentiable. Inputs as normalised by ``inputs.normalize``:
    q [N, T, H, K], k [N, T, n_h, H, K], v [N, T, n_h, H, V], beta [N, T, n_h, H], log_decay [N, T, H] or None,
    initial_state fp32 [NS, H, K, V] or None; with cu_seqlens [NS + 1] (int), N = 1 and the sequences are packed
    along T. ``config``: block settings of TUNING (``make_blocks``). Returns (o [N, T, H, V] in q's dtype, final
    state fp32 [NS, H, K, V]). ``final_state``: a contiguous fp32 [NS, H, K, V] to write the final state into
    (without gradients; it may be initial_state itself: each program reads its slice of h0 before it writes that
    slice of the final state)."""
    require_kernel_dtypes(q=q)
    q, k, v, beta, g, h0 = contiguous(q, k, v, beta, log_decay, initial_state)
    cu = None if cu_seqlens is None else cu_seqlens.to(device=q.device, dtype=torch.int32).contiguous()
    NS = q.shape[0] if cu is None else cu.numel() - 1
    blocks = make_blocks(k.shape[-1], v.shape[-1], NS * q.shape[2], config)
    # r is kept only when a backward can follow (ctx.needs_input_grad ignores no_grad mode)
    grad = torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in (q, k, v, beta, g, h0))
    if final_state is not None and (grad or not final_state.is_contiguous() or final_state.dtype != torch.float32):
        raise ValueError("final_state must be a contiguous fp32 tensor, and gradients off")
    return _Recurrent.apply(q, k, v, beta, g, h0, scale, cu, grad, blocks, final_state)
