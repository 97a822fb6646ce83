"""Chunked delta rule on Triton as a chunk-parallel pipeline: 3 launches forward, 4 backward.

``delta_rule_triton`` is the autograd entry point used by ``api.delta_rule(backend="triton", algorithm="chunk")``;
inputs are already validated and normalised to the multi-Householder layout (k [N, T, n_h, H, K], ...). Kernels:
``kernels_chunk.py``.

Math, per head, for a chunk of L sub-steps (C tokens x n_h Householders) with start state S0 [K, V]:
cumulative log-gates g_r within the chunk (the gate of a token acts at its first sub-step), Gamma = exp(g),
E_rs = exp(g_r - g_s) for s < r, A = diag(beta) (K K^T * E) strictly lower, T = (I + A)^{-1} (the WY / UT form).
Then the writes v_new = T diag(beta) (V - diag(Gamma) K S0) = u - w S0 with w = T diag(beta Gamma) K and
u = T diag(beta) V; the outputs o = scale (diag(exp gq) Q S0 + (Q K^T * Eq) v_new) (query i reads the state after
its token's last sub-step); the next start state S1 = exp(g_L) S0 + (diag(exp(g_L - g)) K)^T v_new.

Forward:  prep (chunk-parallel: gc, T, w, u) -> state_fwd (sequential over chunks: S0 of every chunk, v_new, final
          state) -> out (chunk-parallel: o).
Backward: prep again (+ T, the chunk-local dLoss/dv_new and scale Q^T diag(exp gq) dO) -> state_fwd again (the
          S0's and v_new; nothing of the forward is kept but the inputs) -> state_bwd (sequential, from the last
          chunk: dLoss/dS at every chunk end, dLoss/dv_new, d initial_state) -> grad (chunk-parallel: dq, dk, dv,
          dbeta, dlog_decay).

The state, every product that touches it, the inverse and the buffers between kernels are fp32 (``precision`` picks how
tl.dot multiplies fp32 tiles: "tf32x3" (what "auto" takes but for bf16 inputs on GPUs, ``auto_precision``) is
fp32-accurate on tensor cores, "ieee" is exact fp32 FMA, "tf32" is faster and less exact; triton's "bf16x3"/"bf16x6" are
not offered: on sm_90 with triton 3.6 they make the kernels read shared memory out of bounds); products of two inputs (Q
K^T, K K^T, Q^T dO) run in the inputs' dtype, which is exact for bf16/fp16. A product of an input tile and an fp32 tile
converts the input to fp32 and runs at ``precision``.

``precision="bf16"`` runs those products on bf16 tensor cores with fp32 accumulation, and keeps what needs fp32
there, as measured at beta near 2 (docs/kernels.md, "The bf16 precision"): the state and its accumulation (fp32);
the inverse T, the products that set the state recursion (w, u, W S0, K^T v_new, K dS, W^T dv) and those that carry
T's conditioning into o and the gradients (P v_new, dR = T^T dU, dP, the chunk-local dv_new, dq's intra-chunk term,
and dbeta's dR v_new^T, dU S0^T, T^T Y, DE K, which repeated keys need) in two or three bf16 passes of a hi/lo split
(about fp32-accurate); the rest (Q S0, the gradients' other state and chunk products) in one pass, both operands
rounded to bf16. The per-chunk states hs and dhs are stored in bf16 (the products that read them round them so
anyway); fp32 inputs keep their products of two inputs at tf32x3. Under Triton's interpreter (whose bf16 tiles its
matmul cannot read) the kernels round the operands to bf16 values held in fp32 (PREC "bf16_emulated"), which
multiplies as the tensor cores do.

Triton 3.6 on sm_90 also miscompiles the gradient kernel's fp32 dots with 16-wide V blocks (an out-of-bounds
shared-memory read, found with compute-sanitizer), so that kernel takes V in blocks of at least 32 (masked).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..._triton import cdiv, interpreter_requested, kernels_for, loop_bound, pow2, require_kernel_dtypes, sm_count
from .launch import check_tuning, contiguous

_MODULE = f"{__package__}.kernels_chunk"
PRECISIONS = ("tf32x3", "ieee", "tf32", "bf16")
MAX_ROWS = 64  # sub-steps per chunk (tokens x n_h): the kernels hold [rows, rows] fp32 tiles in registers
MIN_BV_GRAD = 32  # see the module docstring: 16-wide V blocks in the gradient kernel break on sm_90
# precision="bf16" on sm_90 (triton 3.6): an fp32 MMA result rounded to bf16 and fed to a dot of another width
# miscompiles (docs/kernels.md, "The bf16 precision"). bf16 therefore runs every kernel at the chunk's full width:
# V and K blocks of BF16_ROWS in prep, out and grad (narrower V or K are masked), and on GPUs only chunks of
# BF16_ROWS rows; fp32 inputs, wrong there by another pattern, are refused on GPUs. The gradient kernel then runs
# at 4 warps by default (BF16_WARPS): at 8 warps its 64-wide blocks are right on an H100 too (repro R15) and spill
# less, but the whole forward+backward was slower there (results/benchmarks/h100/bf16_warps8.md); tunable.
BF16_ROWS = MAX_ROWS
BF16_BLOCKS = {"BV_prep": BF16_ROWS, "BV_out": BF16_ROWS, "BV_grad": BF16_ROWS, "BK_grad": BF16_ROWS}
BF16_WARPS = {"warps_grad": 4}
BF16_FP32_ON_GPU = (
    "precision='bf16' on GPUs takes bf16 or fp16 inputs (with fp32 inputs its kernels compiled for sm_90 give o 17x "
    "off: docs/kernels.md, 'The bf16 precision'); use 'tf32x3' or 'tf32'"
)


@dataclass(frozen=True)
class Config:
    """Block sizes of one call. C tokens = C * n_h sub-steps per chunk, padded to BL rows (queries to BC);
    BS-row diagonal blocks in the inverse; K in blocks of BK <= 64 (BK_grad in the gradient kernel); V-blocks,
    warps and pipeline stages per kernel; ``precision`` of the fp32 products."""

    C: int
    BL: int
    BC: int
    BS: int
    BK: int
    BK_grad: int
    BV_prep: int
    BV_sfwd: int
    BV_out: int
    BV_sbwd: int
    BV_grad: int
    warps_prep: int
    warps_state: int
    warps_out: int
    warps_grad: int
    stages_state: int
    precision: str

    @property
    def LOG_NB(self) -> int:  # noqa: N802 - the kernels' name: merge steps of the inverse, log2(BL / BS)
        return (self.BL // self.BS).bit_length() - 1


# the keys of delta_rule(triton_config=...) for algorithm="chunk": Config's block settings (C, BL and BC follow
# from chunk_size, precision is its own argument) and block_v, a cap on every V-block width
TUNING = ("block_v", *(f.name for f in dataclasses.fields(Config) if f.name not in ("C", "BL", "BC", "precision")))


def default_chunk_tokens(n_h: int) -> int:
    """Tokens per chunk when the caller gives none: as many as fill MAX_ROWS sub-steps (64 for DeltaNet)."""
    return MAX_ROWS // n_h


def make_config(
    n_h: int,
    K: int,
    V: int,
    programs: int,
    device: torch.device,
    chunk_size: int | None = None,
    precision: str = "tf32x3",
    tuning: dict | None = None,
) -> Config:
    """Block sizes for N * H = ``programs`` sequence-heads, chosen so that the kernels compiled for sm_90 spill
    little (ptxas, read ahead of time on a CPU). The sequential passes split V further until they have about one
    program per SM (each program walks all chunks: fewer programs than SMs leave the GPU idle). ``chunk_size``:
    tokens per chunk (None: ``default_chunk_tokens``); ``tuning``: settings of TUNING to use as given."""
    check_precision(precision)
    if n_h > MAX_ROWS:
        raise ValueError(f"the triton backend takes at most {MAX_ROWS} Householders per token, got n_h = {n_h}")
    C = default_chunk_tokens(n_h) if chunk_size is None else chunk_size
    if not isinstance(C, int) or C < 1 or C * n_h > MAX_ROWS:
        raise ValueError(f"chunk_size of the triton chunk kernels must be a positive int with chunk_size * n_h <= "
                         f"{MAX_ROWS} (n_h = {n_h}), got {chunk_size!r}")  # fmt: skip
    if pow2(K) > 256:
        raise ValueError(f"the triton backend takes key dims up to 256, got K = {K}")
    tuning = dict(tuning or {})
    check_tuning(tuning, TUNING, "chunk")
    BL = _padded_rows(C, n_h)
    if precision == "bf16" and device.type == "cuda":
        _check_bf16_on_gpu(BL, tuning, chunk_size)
    cap = max(16, pow2(V))
    if "block_v" in tuning:
        cap = min(cap, max(16, pow2(tuning.pop("block_v"))))
    sms = sm_count(device) or 0

    def seq_bv(bv: int) -> int:
        bv = min(bv, cap)
        while bv > 16 and programs * cdiv(V, bv) < sms:
            bv //= 2
        return bv

    cfg = Config(
        C=C,
        BL=BL,
        BC=max(16, pow2(C)),
        BS=16,
        BK=min(64, max(16, pow2(K))),
        BK_grad=16,
        BV_prep=min(cap, 32),
        BV_sfwd=seq_bv(32 if K <= 128 else 16),
        BV_out=min(cap, 32),
        BV_sbwd=seq_bv(32 if K <= 64 else 16),
        BV_grad=max(MIN_BV_GRAD, min(cap, 32)),
        warps_prep=4,
        warps_state=4,
        warps_out=4,
        warps_grad=8 if BL >= 64 else 4,
        stages_state=2,
        precision=precision,
    )
    if precision == "bf16":
        cfg = dataclasses.replace(cfg, **BF16_BLOCKS, **BF16_WARPS)
    cfg = dataclasses.replace(cfg, **tuning)
    check_config(cfg)
    return cfg


def _padded_rows(C: int, n_h: int) -> int:
    """BL: a chunk's C * n_h sub-steps padded to a power of two (at least 16)."""
    return max(16, pow2(C * n_h))


def _bf16_blocks_changed(tuning: dict) -> list[str]:
    """The keys of ``tuning`` that set one of BF16_BLOCKS to another value."""
    return sorted(k for k in tuning if k in BF16_BLOCKS and tuning[k] != BF16_BLOCKS[k])


def _check_bf16_on_gpu(BL: int, tuning: dict, chunk_size) -> None:
    """Refuse what would miscompile under precision="bf16" on a GPU (BF16_BLOCKS): chunks of other than 64 rows
    (BL padded rows), and tuning that changes the bf16 blocks."""
    if BL != BF16_ROWS:
        raise ValueError(f"precision='bf16' on GPUs takes chunks of {BF16_ROWS} rows (chunk_size * n_h in 33..64; "
                         f"other widths miscompile on sm_90), got chunk_size={chunk_size!r}")  # fmt: skip
    changed = _bf16_blocks_changed(tuning)
    if changed:
        raise ValueError(f"precision='bf16' on GPUs fixes {changed} to {[BF16_BLOCKS[k] for k in changed]} (other "
                         f"widths miscompile on sm_90)")  # fmt: skip


def auto_precision(dtype: torch.dtype, device: torch.device, n_h: int, chunk_size, tuning: dict | None) -> str:
    """What precision="auto" takes: "bf16" for bf16 inputs on a GPU where its kernels compile right (chunks of
    BF16_ROWS rows, the bf16 blocks as BF16_BLOCKS): o and gradients within 5e-3 / 8e-3 at beta near 2 and about
    3x faster than "tf32x3" at head dim 128 (docs/kernels.md, "The bf16 precision"); else "tf32x3" (fp32 inputs,
    fp16 inputs, whose extra mantissa bits bf16 products would drop, not measured on a GPU; DeltaProduct's n_h > 1,
    whose GPU test passed with random keys, not yet with repeated ones; the interpreter, other chunk widths)."""
    if device.type != "cuda" or dtype != torch.bfloat16 or n_h != 1:  # n_h > 1: repeated keys not yet run on a GPU
        return "tf32x3"
    C = default_chunk_tokens(n_h) if chunk_size is None else chunk_size
    if not isinstance(C, int) or _padded_rows(C, n_h) != BF16_ROWS or _bf16_blocks_changed(tuning or {}):
        return "tf32x3"
    return "bf16"


def check_precision(precision: str) -> None:
    """Refuse a ``precision`` that is not one of PRECISIONS."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def check_config(cfg: Config) -> None:
    """Refuse block settings the kernels cannot take, and those that triton 3.6 miscompiles for sm_90 (module
    docstring): those would not fail cleanly there but read shared memory out of bounds and take the CUDA context
    down with them."""
    if cfg.BV_grad < MIN_BV_GRAD:
        raise ValueError(f"BV_grad must be >= {MIN_BV_GRAD} (narrower V blocks miscompile on sm_90), got {cfg.BV_grad}")
    small = [n for n in ("BK", "BK_grad", "BV_prep", "BV_sfwd", "BV_out", "BV_sbwd") if getattr(cfg, n) < 16]
    if small:
        raise ValueError(f"{small} must be >= 16 (the smallest tl.dot operand), got {[getattr(cfg, n) for n in small]}")
    if cfg.BS > cfg.BL:
        raise ValueError(f"BS must be <= the chunk's {cfg.BL} padded rows, got {cfg.BS}")


def _in_args(dtype: torch.dtype, precision: str) -> dict:
    """How kernels multiply two input tiles: bf16/fp16 go to the tensor cores as they are (exact products, fp32
    sums; IN_PREC is then unused but must be valid), fp32 inputs keep ``precision`` ("bf16": tf32x3, as K K^T feeds
    the inverse). The interpreter stores bf16 as raw bits its matmul cannot read, so there (IN_CAST) those tiles
    are cast to fp32."""
    half = dtype in (torch.bfloat16, torch.float16)
    prec = "tf32" if half else ("tf32x3" if precision == "bf16" else precision)
    return dict(IN_PREC=prec, IN_CAST=dtype == torch.bfloat16 and interpreter_requested())


def _kernel_prec(precision: str) -> str:
    """The kernels' PREC: ``precision``, but "bf16_emulated" for "bf16" under the interpreter (the kernels then
    round operands to bf16 values in fp32 tiles: kernels_chunk._bf16)."""
    return "bf16_emulated" if precision == "bf16" and interpreter_requested() else precision


def _state_dtype(cfg: Config) -> torch.dtype:
    """dtype of the per-chunk state buffers hs and dhs: bf16 with precision "bf16", whose products read them as
    bf16 operands (half the bytes of the two largest buffers), else fp32."""
    return torch.bfloat16 if cfg.precision == "bf16" else torch.float32


def _common(cfg: Config, H: int, K: int, V: int, n_h: int) -> dict:
    return dict(H=H, K=K, V=V, NH=n_h, C=cfg.C, BL=cfg.BL, PREC=_kernel_prec(cfg.precision))


def _prep(q, k, v, beta, g, do, scale, cfg: Config, bwd: bool):
    """(gc or None, T or None, w, u, dvl or None, qdo or None); see kernels_chunk.chunk_prep_kernel."""
    N, T, n_h, H, K = k.shape
    V = v.shape[-1]
    NC = cdiv(T, cfg.C)
    f32 = dict(dtype=torch.float32, device=k.device)
    gc = torch.empty(N, T, n_h, H, **f32) if g is not None else None
    ti = torch.empty(N, NC, H, cfg.BL, cfg.BL, **f32) if bwd else None
    w = torch.empty(N, T, n_h, H, K, **f32)
    u = torch.empty(N, T, n_h, H, V, **f32)
    dvl = torch.empty_like(u) if bwd else None
    qdo = torch.empty(N, NC, H, K, V, dtype=_state_dtype(cfg), device=k.device) if bwd else None
    kernels_for(k.device, _MODULE).chunk_prep_kernel[(NC, N * H)](
        q, k, v, beta, w if g is None else g, w if do is None else do, w if gc is None else gc,
        w if ti is None else ti, w, u, w if dvl is None else dvl, w if qdo is None else qdo, scale, T,
        **_common(cfg, H, K, V, n_h), BC=cfg.BC, BK=cfg.BK, BV=cfg.BV_prep, BS=cfg.BS, LOG_NB=cfg.LOG_NB,
        USE_G=g is not None, BWD=bwd, **_in_args(q.dtype, cfg.precision), num_warps=cfg.warps_prep, num_stages=1,
    )  # fmt: skip
    return gc, ti, w, u, dvl, qdo


def _state_fwd(k, w, u, gc, h0, cfg: Config, store_ht: bool):
    """(hs [N, NC + 1, H, K, V] in ``_state_dtype``, final state fp32 or None); v_new overwrites u."""
    N, T, n_h, H, K = k.shape
    V = u.shape[-1]
    NC = cdiv(T, cfg.C)
    hs = torch.empty(N, NC + 1, H, K, V, dtype=_state_dtype(cfg), device=k.device)
    ht = torch.empty(N, H, K, V, dtype=torch.float32, device=k.device) if store_ht else None
    kernels_for(k.device, _MODULE).chunk_state_fwd_kernel[(cdiv(V, cfg.BV_sfwd), N * H)](
        k, w, u, hs if gc is None else gc, hs if h0 is None else h0, hs, hs if ht is None else ht, T, NC,
        **_common(cfg, H, K, V, n_h), BK=cfg.BK, BV=cfg.BV_sfwd, USE_G=gc is not None, USE_H0=h0 is not None,
        STORE_HT=store_ht, NC_I=loop_bound(NC), num_warps=cfg.warps_state, num_stages=cfg.stages_state,
    )  # fmt: skip
    return hs, ht


def chunk_fwd(q, k, v, beta, g, h0, scale, cfg: Config):
    """(o [N, T, H, V] in q's dtype, final state fp32 [N, H, K, V])."""
    N, T, n_h, H, K = k.shape
    V = v.shape[-1]
    NC = cdiv(T, cfg.C)
    gc, _, w, u, _, _ = _prep(q, k, v, beta, g, None, scale, cfg, bwd=False)
    hs, ht = _state_fwd(k, w, u, gc, h0, cfg, store_ht=True)
    o = torch.empty(N, T, H, V, dtype=q.dtype, device=q.device)
    kernels_for(q.device, _MODULE).chunk_out_kernel[(cdiv(V, cfg.BV_out), NC, N * H)](
        q, k, u, hs if gc is None else gc, hs, o, scale, T,
        **_common(cfg, H, K, V, n_h), BC=cfg.BC, BK=cfg.BK, BV=cfg.BV_out, USE_G=g is not None,
        **_in_args(q.dtype, cfg.precision), num_warps=cfg.warps_out, num_stages=1,
    )  # fmt: skip
    return o, ht


def chunk_bwd(q, k, v, beta, g, h0, do, dht, scale, cfg: Config):
    """(dq, dk, dv, dbeta, dlog_decay or None) in the inputs' dtypes, and d initial_state (fp32) or None."""
    N, T, n_h, H, K = k.shape
    V = v.shape[-1]
    NC = cdiv(T, cfg.C)
    dev = q.device
    mod = kernels_for(dev, _MODULE)
    gc, ti, w, u, dvl, dhs = _prep(q, k, v, beta, g, do, scale, cfg, bwd=True)
    hs, _ = _state_fwd(k, w, u, gc, h0, cfg, store_ht=False)
    dh0 = torch.empty(N, H, K, V, dtype=torch.float32, device=dev) if h0 is not None else None
    mod.chunk_state_bwd_kernel[(cdiv(V, cfg.BV_sbwd), N * H)](
        k, w, dhs if gc is None else gc, dhs if dht is None else dht, dvl, dhs, dhs if dh0 is None else dh0,
        T, NC, **_common(cfg, H, K, V, n_h), BK=cfg.BK, BV=cfg.BV_sbwd, USE_G=g is not None,
        USE_DHT=dht is not None, STORE_DH0=h0 is not None, NC_I=loop_bound(NC), num_warps=cfg.warps_state,
        num_stages=cfg.stages_state,
    )  # fmt: skip
    del w  # the gradient kernel does not read w: its buffer is free for the gradients (the backward's peak)
    dq, dk, dv, db = (torch.empty_like(x) for x in (q, k, v, beta))
    dg = torch.empty_like(g) if g is not None else None
    mod.chunk_grad_kernel[(NC, N * H)](
        q, k, v, beta, dhs if gc is None else gc, ti, hs, dhs, u, dvl, do, dq, dk, dv, db, dq if dg is None else dg,
        scale, T, **_common(cfg, H, K, V, n_h), BC=cfg.BC, BK=cfg.BK_grad, BV=cfg.BV_grad,
        USE_G=g is not None, num_warps=cfg.warps_grad, num_stages=1,
    )  # fmt: skip
    return dq, dk, dv, db, dg, dh0


class DeltaRuleTritonFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, beta, g, h0, scale, cfg):
        q, k, v, beta, g, h0 = contiguous(q, k, v, beta, g, h0)
        o, ht = chunk_fwd(q, k, v, beta, g, h0, scale, cfg)
        ctx.save_for_backward(q, k, v, beta, g, h0)
        ctx.scale, ctx.cfg = scale, cfg
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):
        q, k, v, beta, g, h0 = ctx.saved_tensors
        N, T, _, H, _ = k.shape
        do = q.new_zeros(N, T, H, v.shape[-1]) if do is None else do.contiguous()
        do = do.to(q.dtype)  # a no-op but for odd upstream dtypes: the kernels multiply q and do as they are
        dht = None if dht is None else dht.contiguous()
        dq, dk, dv, db, dg, dh0 = chunk_bwd(q, k, v, beta, g, h0, do, dht, ctx.scale, ctx.cfg)
        return dq, dk, dv, db, dg, dh0, None, None


# Dynamo cannot trace the kernel launcher inside the autograd.Function (torch.compile of a model failed with an
# AssertionError there: docs/kernels.md, "Which path runs", compiled callers): run it eagerly inside compiled graphs.
@torch.compiler.disable
def delta_rule_triton(
    q, k, v, beta, log_decay, scale, initial_state, *, chunk_size=None, precision="tf32x3", config=None
):
    """Chunked delta rule. q [N, T, H, K]; k [N, T, n_h, H, K]; v [N, T, n_h, H, V]; beta [N, T, n_h, H];
    log_decay [N, T, H] or None; initial_state fp32 [N, H, K, V] or None. Returns (o [N, T, H, V] in q's dtype,
    final state fp32 [N, H, K, V]); differentiable in all tensor inputs. CUDA tensors run compiled kernels, others
    run them in Triton's interpreter (slow: for tests). ``chunk_size``: tokens per chunk, chunk_size * n_h <= 64
    (None: 64 // n_h); ``precision`` of the fp32 products, one of PRECISIONS (module docstring); ``config``: block
    settings of TUNING (e.g. {"BK_grad": 32, "BV_grad": 64}; "block_v" caps every V-block width, the gradient
    kernel's staying >= 32; default: by register budget and, for the sequential passes, by the number of SMs)."""
    require_kernel_dtypes(q=q)
    if precision == "bf16" and q.is_cuda and q.dtype == torch.float32:
        raise ValueError(BF16_FP32_ON_GPU)
    N, T, n_h, H, K = k.shape
    cfg = make_config(n_h, K, v.shape[-1], N * H, q.device, chunk_size, precision, config)
    if T == 0:
        o = q.new_zeros(N, 0, H, v.shape[-1])
        ht = initial_state if initial_state is not None else q.new_zeros(N, H, K, v.shape[-1], dtype=torch.float32)
        return o, ht
    return DeltaRuleTritonFunction.apply(q, k, v, beta, log_decay, initial_state, float(scale), cfg)
