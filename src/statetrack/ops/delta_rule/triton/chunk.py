"""Chunked delta rule on Triton: one forward launch, two backward launches (states, then gradients).

``delta_rule_triton`` is the autograd entry point used by ``api.delta_rule(backend="triton")``; inputs are already
validated and normalised to the multi-Householder layout (k [N, T, n_h, H, K], ...). The state and every product
that touches it, and the triangular inverse, are fp32 (``precision`` "tf32x3" or "ieee" picks how tl.dot computes
fp32 products; "tf32x3" is fp32-accurate on tensor cores). Chunk states are not kept between forward and backward:
the backward recomputes them with the forward kernel (one fp32 [N, NC, H, K, V] buffer alive during backward only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._loader import kernels_for

PRECISIONS = ("tf32x3", "ieee", "tf32")


def _pow2(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()


@dataclass(frozen=True)
class Config:
    """Block sizes of one call. BL sub-steps per chunk (C = BL // n_h tokens), BS-row diagonal blocks in the
    inverse, BC query rows, BK >= K, BV columns of the state per program."""

    C: int
    BL: int
    BC: int
    BS: int
    LOG_NB: int
    BK: int
    BV_fwd: int
    BV_bwd: int
    warps_fwd: int
    warps_bwd: int
    precision: str
    split_fwd: bool
    split_bwd: bool


def make_config(
    n_h: int,
    K: int,
    V: int,
    chunk: int = 32,
    precision: str = "tf32x3",
    block_v: int | None = None,
    split: bool | None = None,
) -> Config:
    """Block sizes by register budget. Chunks of 32 sub-steps by default: at 64 the compiled kernels spill several
    KiB per thread on sm_90 (ptxas), at 32 far less (forward) or about half (backward)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if chunk not in (16, 32, 64):
        raise ValueError(f"chunk (sub-steps per chunk of the triton backend) must be 16, 32 or 64, got {chunk}")
    if n_h > chunk:
        raise ValueError(f"the triton backend takes at most {chunk} Householders per token, got n_h = {n_h}")
    C = chunk // n_h
    BL = max(16, _pow2(C * n_h))
    BS = 16
    BK = max(16, _pow2(K))
    if BK > 256:
        raise ValueError(f"the triton backend takes key dims up to 256, got K = {K}")
    BVmax = max(16, _pow2(V))
    if block_v is not None:
        BVmax = min(BVmax, max(16, _pow2(block_v)))
    BV_fwd = min(BVmax, 64 if BK <= 64 else 32)
    BV_bwd = min(BVmax, 32 if BK <= 128 else 16)
    return Config(
        C=C,
        BL=BL,
        BC=max(16, _pow2(C)),
        BS=BS,
        LOG_NB=(BL // BS).bit_length() - 1,
        BK=BK,
        BV_fwd=BV_fwd,
        BV_bwd=BV_bwd,
        warps_fwd=4 if BK <= 32 else 8,
        warps_bwd=4 if BK <= 16 else 8,
        precision=precision,
        split_fwd=BK >= 64 if split is None else split,
        split_bwd=True if split is None else split,
    )


def _meta(cfg, H, K, V, n_h, dtype, BV, warps, **flags) -> dict:
    """Compile-time parameters shared by the forward and backward kernels; ``flags`` are the direction's own."""
    return dict(H=H, K=K, V=V, NH=n_h, C=cfg.C, BL=cfg.BL, BC=cfg.BC, BK=cfg.BK, BV=BV, BS=cfg.BS,
                LOG_NB=cfg.LOG_NB, PREC=cfg.precision, IN_PREC=_input_precision(dtype, cfg.precision),
                num_warps=warps, num_stages=1, **flags)  # fmt: skip


def _input_precision(dtype: torch.dtype, precision: str) -> str:
    """Products of two bf16/fp16 inputs are exact in one tf32 pass; fp32 inputs keep ``precision``."""
    return "tf32" if dtype in (torch.bfloat16, torch.float16) and precision != "ieee" else precision


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def chunk_fwd(q, k, v, beta, g, h0, scale, cfg: Config, store_o=True, store_states=False):
    """Returns (o or None, final state fp32 [N, H, K, V], chunk-start states fp32 [N, NC, H, K, V] or None).

    One sequential launch (o and states in one pass), or with ``cfg.split_fwd`` (default: for head dims >= 64,
    where the fused pass spills) a light sequential pass for the states and a chunk-parallel pass for o."""
    N, T, n_h, H, K = k.shape
    V = v.shape[-1]
    NC = _cdiv(T, cfg.C)
    dev = q.device
    split = cfg.split_fwd
    o = torch.empty(N, T, H, V, dtype=q.dtype, device=dev) if store_o else None
    ht = torch.empty(N, H, K, V, dtype=torch.float32, device=dev)
    hs = torch.empty(N, NC, H, K, V, dtype=torch.float32, device=dev) if (store_states or split) else None
    args = (q, k, v, beta, ht if g is None else g, ht if h0 is None else h0)
    args += (q.new_empty(1) if o is None else o, ht, ht if hs is None else hs, scale, T, NC)
    meta = _meta(cfg, H, K, V, n_h, q.dtype, cfg.BV_fwd, cfg.warps_fwd, USE_G=g is not None, USE_H0=h0 is not None)
    kern = kernels_for(dev).chunk_fwd_kernel
    NV = _cdiv(V, cfg.BV_fwd)
    if store_o and not split:
        kern[(NV, N * H)](*args, store_hs=int(store_states), MODE=0, **meta)
    else:
        kern[(NV, N * H)](*args, store_hs=1, MODE=1, **meta)
        if store_o:
            kern[(NV, N * H, NC)](*args, store_hs=0, MODE=2, **meta)
    return o, ht, hs if store_states else None


def chunk_bwd(q, k, v, beta, g, hs, do, dht, scale, cfg: Config):
    """Gradients (dq, dk, dv, dbeta, dlog_decay or None, dh0) in fp32 (dv in v's dtype).

    cfg.split_bwd: two launches, a light sequential pass over the chunks (dv, dh0 and the state gradient at every
    chunk end) and a chunk-parallel pass for dq, dk, dbeta, dlog_decay; else one fused sequential pass."""
    N, T, n_h, H, K = k.shape
    V = v.shape[-1]
    NC = hs.shape[1]
    dev = q.device
    NV = _cdiv(V, cfg.BV_bwd)
    f32 = torch.float32
    dq = torch.empty(NV, N, T, H, K, dtype=f32, device=dev)
    dk = torch.empty(NV, N, T, n_h, H, K, dtype=f32, device=dev)
    dv = torch.empty_like(v)
    db = torch.empty(NV, N, T, n_h, H, dtype=f32, device=dev)
    dg = torch.empty(NV, N, T, H, dtype=f32, device=dev) if g is not None else None
    dh0 = torch.empty(N, H, K, V, dtype=f32, device=dev)
    split = cfg.split_bwd
    dhs = torch.empty_like(hs) if split else dh0
    kern = kernels_for(dev).chunk_bwd_kernel
    args = (q, k, v, beta, dh0 if g is None else g, hs, dhs, do, dh0 if dht is None else dht, dq, dk, dv, db)
    args += (dh0 if dg is None else dg, dh0, scale, T, NC)
    meta = _meta(cfg, H, K, V, n_h, q.dtype, cfg.BV_bwd, cfg.warps_bwd, USE_G=g is not None, USE_DHT=dht is not None)
    if split:
        kern[(NV, N * H)](*args, MODE=1, **meta)
        kern[(NV, N * H, NC)](*args, MODE=2, **meta)
    else:
        kern[(NV, N * H)](*args, MODE=0, **meta)
    red = (lambda x: x[0]) if NV == 1 else (lambda x: x.sum(0))
    return red(dq), red(dk), dv, red(db), None if dg is None else red(dg), dh0


class DeltaRuleTritonFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, beta, g, h0, scale, cfg):
        q, k, v, beta = (x.contiguous() for x in (q, k, v, beta))
        g = None if g is None else g.contiguous()
        h0 = None if h0 is None else h0.contiguous()
        o, ht, _ = chunk_fwd(q, k, v, beta, g, h0, scale, cfg)
        ctx.save_for_backward(q, k, v, beta, g, h0)
        ctx.scale, ctx.cfg = scale, cfg
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):
        q, k, v, beta, g, h0 = ctx.saved_tensors
        scale, cfg = ctx.scale, ctx.cfg
        _, _, hs = chunk_fwd(q, k, v, beta, g, h0, scale, cfg, store_o=False, store_states=True)
        do = torch.zeros_like(q[..., :1].expand(*q.shape[:-1], v.shape[-1])) if do is None else do.contiguous()
        dht = None if dht is None else dht.contiguous()
        dq, dk, dv, db, dg, dh0 = chunk_bwd(q, k, v, beta, g, hs, do, dht, scale, cfg)
        return (
            dq.to(q.dtype),
            dk.to(k.dtype),
            dv,
            db.to(beta.dtype),
            None if dg is None else dg.to(g.dtype),
            None if h0 is None else dh0,
            None,
            None,
        )


# Dynamo cannot trace the kernel launcher inside the autograd.Function (torch.compile of a model failed with an
# AssertionError there, benchmarks/results/train_steps_h100.md): run it eagerly inside compiled graphs.
@torch.compiler.disable
def delta_rule_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    log_decay: torch.Tensor | None,
    scale: float,
    initial_state: torch.Tensor | None,
    *,
    chunk: int = 32,
    precision: str = "tf32x3",
    block_v: int | None = None,
    split: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked delta rule. q [N, T, H, K]; k [N, T, n_h, H, K]; v [N, T, n_h, H, V]; beta [N, T, n_h, H];
    log_decay [N, T, H] or None; initial_state fp32 [N, H, K, V] or None. Returns (o [N, T, H, V] in q's dtype,
    final state fp32 [N, H, K, V]); differentiable in all tensor inputs. CUDA tensors run compiled kernels, others
    run them in Triton's interpreter (slow: for tests). ``chunk``: sub-steps per chunk (16, 32 or 64);
    ``precision`` of fp32 tl.dot products; ``block_v`` caps the V-block width (default: by register budget);
    ``split`` the sequential passes from chunk-parallel ones (default: forward for K >= 64, backward always)."""
    if q.dtype not in (torch.bfloat16, torch.float16, torch.float32):
        raise TypeError(f"the triton backend takes bf16, fp16 or fp32 inputs, got {q.dtype}")
    N, T, n_h, H, K = k.shape
    if T == 0:
        o = q.new_zeros(N, 0, H, v.shape[-1])
        ht = initial_state if initial_state is not None else q.new_zeros(N, H, K, v.shape[-1], dtype=torch.float32)
        return o, ht
    cfg = make_config(n_h, K, v.shape[-1], chunk, precision, block_v, split)
    return DeltaRuleTritonFunction.apply(q, k, v, beta, log_decay, initial_state, float(scale), cfg)
