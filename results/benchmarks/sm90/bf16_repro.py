"""Repro of the chunked delta rule's precision="bf16" failure on sm_90 (results/benchmarks/sm90/triton_miscompiles.md).

    PYTHONPATH=src python results/benchmarks/sm90/bf16_repro.py            # on an H100 (every case, ~20-40 s)
    TRITON_INTERPRET=1 PYTHONPATH=src python results/benchmarks/sm90/bf16_repro.py   # CPU check (all PASS)
    options: --only SUBSTR[,SUBSTR]  --jobs N  --timeout S  --list

Every case runs in its own subprocess (an illegal memory access kills a CUDA context, and one of the suspects may
hang), several at a time; each prints one line: PASS / FAIL / CRASH / TIMEOUT with the measured errors.

Part T: tiny kernels that do only one suspicious pattern, compiled, against torch in fp64. They call the project's
own @triton.jit helpers (_bf16, _dot16x3, _mm, _in_dot_t from kernels_chunk), so the code is the kernels' code:
  T1 w-pattern (control): A = (X Y^T) * s, an fp32 MMA accumulator, split hi/lo to bf16 and fed as the register A
     operand of a dot with the SAME N (64) as the dot that produced it (kernels_chunk.py:266/317: w = T diag(b) K)
  T2 u-pattern: the same A, but the second dot has N = 32 (a V block) inside a 2-iteration loop
     (kernels_chunk.py:262-270/318: u = T diag(b) V with BV_prep = 32): convert_layout #mma(n64) -> dot_op(#mma1 n32)
  T3 as T2 without the loop (one 32-wide block)          T4 as T3 with an fp32 B (3 passes: chunk_out's P v_new, :498)
  T5 dvl-pattern: A = tl.trans(accumulator) -> #linear layout -> bf16 -> smem -> dot, N = 32 in a loop (:325/:331)
  T6 as T5 with N = 64 (no N change)                     T7 as T2 with 8 warps
  T8 dk-pattern: tl.trans(accumulator) @ fp32 [64, 16] tile, one bf16 pass, 8 warps (:632-633)
  T9 dA-pattern: dR = T^T dU (acc, N = 32, 8 warps) then dA += dR @ vn^T (N = 64): a register conversion between MMA
     layouts with different warpsPerCTA ([8,1] -> [4,2]) (:593/:596)
  T10 as T2 with num_warps = 2 (mma.sync / MMAv2 instead of wgmma: the fla #984 workaround)
  T11 chunk_prep's w-then-u sequence in one kernel (:317-318)       T12 as T11 with BV = 64
  T13 as T2, each block computed as trans(trans(B) @ trans(A)): the rounded accumulator becomes the wgmma's
     shared-memory operand instead of its register A operand (a workaround candidate: if it passes, the kernels could
     keep 32-wide blocks and 8 warps under bf16, which spill ~4 KB a thread less: chunk_kernel_registers.md)
  T14 as T13 with 8 warps
Part R: the real stage kernels (as .snap/bf16_debug.py does: one stage at bf16, inputs from the tf32x3 pipeline,
  N=1, T=256, H=2, K=V=64, bf16 inputs), each against the same stage at tf32x3, with the default block config and
  with configs that remove the suspect patterns (checked by compiling for sm_90 on a CPU, analysis note):
  BV_prep=64 / BV_out=64 (no cross-MMA-layout conversion in prep / out), BV_grad=64 + BK_grad=64 + warps_grad=4
  (none in grad), warps=2 (no wgmma at all). R13-R15 (session 14): the 64-wide blocks at 8 warps (compiled on the
  CPU they spill 160 / 60 / 888 B a thread in prep / out / grad at D = 128, against 764 / 756 / 3872 at 4 warps).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

INTERP = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0", "false", "False")

# ------------------------------------------------------------------------------------------------ tiny kernels
# (module level: @triton.jit resolves the helpers it calls among its module's globals)
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from statetrack.ops.delta_rule.triton.kernels_chunk import _dot16, _dot16x3, _in_dot_t, _mm  # noqa: E402


@triton.jit
def k_chain(x_ptr, y_ptr, s_ptr, b_ptr, o_ptr, M: tl.constexpr, KD: tl.constexpr, N: tl.constexpr,
            BN: tl.constexpr, TRANS: tl.constexpr, SPLIT: tl.constexpr, PREC: tl.constexpr,
            IN_CAST: tl.constexpr, SWAP: tl.constexpr = False):  # fmt: skip
    """P = X Y^T (two bf16 inputs, fp32 sums, as kernels_chunk's K K^T / Q K^T); A = P * s[None, :] (TRANS:
    trans(P) * s[None, :]); O[:, blk] = A @ B[:, blk] for N // BN column blocks of B, through _dot16x3 (SPLIT)
    or _dot16, as _apply_T / the dvl product do. SWAP: each block as trans(trans(B_blk) @ trans(A)), so that the
    rounded accumulator is the second (shared-memory) operand of the wgmma, not the register A operand."""
    o_m = tl.arange(0, M)
    o_k = tl.arange(0, KD)
    b_x = tl.load(x_ptr + o_m[:, None] * KD + o_k[None, :])
    b_y = tl.load(y_ptr + o_m[:, None] * KD + o_k[None, :])
    b_p = _in_dot_t(b_x, b_y, tl.zeros([M, M], dtype=tl.float32), "tf32", IN_CAST)
    b_s = tl.load(s_ptr + o_m)
    if TRANS:
        b_a = tl.trans(b_p) * b_s[None, :]
    else:
        b_a = b_p * b_s[None, :]
    NB: tl.constexpr = N // BN
    for i in range(NB):
        o_n = i * BN + tl.arange(0, BN)
        b_b = tl.load(b_ptr + o_m[:, None] * N + o_n[None, :])
        if SWAP:
            b_o = tl.trans(_dot16x3(tl.trans(b_b), tl.trans(b_a), None, PREC))
        elif SPLIT:
            b_o = _dot16x3(b_a, b_b, None, PREC)
        else:
            b_o = _dot16(b_a, b_b, None, PREC)
        tl.store(o_ptr + o_m[:, None] * N + o_n[None, :], b_o)


@triton.jit
def k_wu(x_ptr, y_ptr, s_ptr, bk_ptr, bv_ptr, w_ptr, u_ptr, M: tl.constexpr, KD: tl.constexpr, V: tl.constexpr,
         BV: tl.constexpr, PREC: tl.constexpr, IN_CAST: tl.constexpr):  # fmt: skip
    """chunk_prep's two _apply_T calls in one kernel: the same A = (X Y^T) * s times a [M, KD] tile (w, N = KD) and
    then, in a loop over BV-wide blocks, times a [M, V] tile (u) -- kernels_chunk.py:317-318."""
    o_m = tl.arange(0, M)
    o_k = tl.arange(0, KD)
    b_x = tl.load(x_ptr + o_m[:, None] * KD + o_k[None, :])
    b_y = tl.load(y_ptr + o_m[:, None] * KD + o_k[None, :])
    b_a = _in_dot_t(b_x, b_y, tl.zeros([M, M], dtype=tl.float32), "tf32", IN_CAST) * tl.load(s_ptr + o_m)[None, :]
    b_w = _dot16x3(b_a, tl.load(bk_ptr + o_m[:, None] * KD + o_k[None, :]), None, PREC)
    tl.store(w_ptr + o_m[:, None] * KD + o_k[None, :], b_w)
    for i in range(V // BV):
        o_v = i * BV + tl.arange(0, BV)
        b_u = _dot16x3(b_a, tl.load(bv_ptr + o_m[:, None] * V + o_v[None, :]), None, PREC)
        tl.store(u_ptr + o_m[:, None] * V + o_v[None, :], b_u)


@triton.jit
def k_dA(t_ptr, du_ptr, vn_ptr, o_ptr, L: tl.constexpr, V: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr):
    """dA = sum over V blocks of (T^T dU_blk) vn_blk^T, as chunk_grad_kernel lines 593 and 596."""
    o_r = tl.arange(0, L)
    o_v = tl.arange(0, BV)
    b_T = tl.load(t_ptr + o_r[:, None] * L + o_r[None, :])
    b_dA = tl.zeros([L, L], dtype=tl.float32)
    for i in range(V // BV):
        b_dU = tl.load(du_ptr + o_r[:, None] * V + (i * BV + o_v)[None, :])
        b_vn = tl.load(vn_ptr + o_r[:, None] * V + (i * BV + o_v)[None, :])
        b_dR = _mm(tl.trans(b_T), b_dU, PREC, True)
        b_dA += _mm(b_dR, tl.trans(b_vn), PREC, True)
    tl.store(o_ptr + o_r[:, None] * L + o_r[None, :], b_dA)


@triton.jit
def k_transA(t_ptr, du_ptr, k_ptr, o_ptr, L: tl.constexpr, V: tl.constexpr, BK: tl.constexpr,
             PREC: tl.constexpr):  # fmt: skip
    """B = T^T dU (an accumulator [L, L] with V = L); O = trans(B) @ K [L, BK] in one bf16 pass, as
    chunk_grad_kernel line 632's _mm(tl.trans(b_B), b_k, PREC, False)."""
    o_r = tl.arange(0, L)
    o_k = tl.arange(0, BK)
    b_T = tl.load(t_ptr + o_r[:, None] * L + o_r[None, :])
    b_dU = tl.load(du_ptr + o_r[:, None] * V + o_r[None, :])
    b_B = _mm(tl.trans(b_T), b_dU, PREC, True)
    b_k = tl.load(k_ptr + o_r[:, None] * BK + o_k[None, :])
    tl.store(o_ptr + o_r[:, None] * BK + o_k[None, :], _mm(tl.trans(b_B), b_k, PREC, False))


def _kernels():
    return dict(chain=k_chain, wu=k_wu, dA=k_dA, transA=k_transA)


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def _dev():
    import torch

    return torch.device("cpu" if INTERP else "cuda")


def _prec():
    return "bf16_emulated" if INTERP else "bf16"


def tiny_chain(N, BN, TRANS=False, SPLIT=True, B_F32=False, warps=4, SWAP=False):
    import torch

    dev = _dev()
    torch.manual_seed(0)
    M = KD = 64
    x = (torch.randn(M, KD, device=dev) / 8).to(torch.bfloat16)
    y = (torch.randn(M, KD, device=dev) / 8).to(torch.bfloat16)
    s = (2 * torch.rand(M, device=dev)).float()
    b = torch.randn(M, N, device=dev)
    b = b if B_F32 else b.to(torch.bfloat16)
    o = torch.empty(M, N, device=dev)
    _kernels()["chain"][(1,)](x, y, s, b, o, M=M, KD=KD, N=N, BN=BN, TRANS=TRANS, SPLIT=SPLIT, PREC=_prec(),
                              IN_CAST=INTERP, SWAP=SWAP, num_warps=warps, num_stages=1)  # fmt: skip
    p = x.double() @ y.double().T
    a = (p.T if TRANS else p) * s.double()[None, :]
    ref = a @ b.double()
    return {"o": _rel(o, ref)}, (2e-3 if SPLIT else 2e-2)


def tiny_wu(BV=32, warps=4):
    import torch

    dev = _dev()
    torch.manual_seed(3)
    M = KD = V = 64
    x = (torch.randn(M, KD, device=dev) / 8).to(torch.bfloat16)
    y = (torch.randn(M, KD, device=dev) / 8).to(torch.bfloat16)
    s = (2 * torch.rand(M, device=dev)).float()
    bk = torch.randn(M, KD, device=dev).to(torch.bfloat16)
    bv = torch.randn(M, V, device=dev).to(torch.bfloat16)
    w, u = torch.empty(M, KD, device=dev), torch.empty(M, V, device=dev)
    _kernels()["wu"][(1,)](x, y, s, bk, bv, w, u, M=M, KD=KD, V=V, BV=BV, PREC=_prec(), IN_CAST=INTERP,
                           num_warps=warps, num_stages=1)  # fmt: skip
    a = (x.double() @ y.double().T) * s.double()[None, :]
    return {"w": _rel(w, a @ bk.double()), "u": _rel(u, a @ bv.double())}, 2e-3


def tiny_dA(warps=8):
    import torch

    dev = _dev()
    torch.manual_seed(1)
    L, V, BV = 64, 64, 32
    t = torch.tril(torch.randn(L, L, device=dev) / 8, -1) + torch.eye(L, device=dev)
    du, vn = torch.randn(L, V, device=dev), torch.randn(L, V, device=dev)
    o = torch.empty(L, L, device=dev)
    _kernels()["dA"][(1,)](t, du, vn, o, L=L, V=V, BV=BV, PREC=_prec(), num_warps=warps, num_stages=1)
    ref = (t.double().T @ du.double()) @ vn.double().T
    return {"dA": _rel(o, ref)}, 2e-3


def tiny_transA(warps=8):
    import torch

    dev = _dev()
    torch.manual_seed(2)
    L, BK = 64, 16
    t = torch.tril(torch.randn(L, L, device=dev) / 8, -1) + torch.eye(L, device=dev)
    du, k = torch.randn(L, L, device=dev), torch.randn(L, BK, device=dev)
    o = torch.empty(L, BK, device=dev)
    _kernels()["transA"][(1,)](t, du, k, o, L=L, V=L, BK=BK, PREC=_prec(), num_warps=warps, num_stages=1)
    ref = (t.double().T @ du.double()).T @ k.double()
    return {"o": _rel(o, ref)}, 2e-2


# ------------------------------------------------------------------------------------------ real stage kernels
def _setup(T=None):
    import torch
    import torch.nn.functional as F

    dev = _dev()
    N, H, K = 1, 2, 64
    T = T or (128 if INTERP else 256)
    torch.manual_seed(0)
    dt = torch.bfloat16
    x = dict(
        q=torch.randn(N, T, H, K, device=dev).to(dt),
        k=F.normalize(torch.randn(N, T, 1, H, K, device=dev), dim=-1).to(dt),
        v=torch.randn(N, T, 1, H, K, device=dev).to(dt),
        beta=(2 * torch.rand(N, T, 1, H, device=dev)).to(dt),
        do=torch.randn(N, T, H, K, device=dev).to(dt),
    )
    return x, dict(N=N, T=T, H=H, K=K, scale=K**-0.5, dev=dev)


def _cfg(d, precision, tuning=None):
    import dataclasses

    from statetrack.ops.delta_rule.triton import chunk as ch

    c = ch.make_config(1, d["K"], d["K"], d["N"] * d["H"], d["dev"], None, "tf32x3", tuning)
    return dataclasses.replace(c, precision=precision)


def _sync():
    import torch

    if torch.cuda.is_available() and not INTERP:
        torch.cuda.synchronize()


def real_prep(bwd, tuning):
    from statetrack.ops.delta_rule.triton import chunk as ch

    x, d = _setup()
    out = {}
    for tag, cfg in (("ref", _cfg(d, "tf32x3")), ("bf16", _cfg(d, "bf16", tuning))):
        _, ti, w, u, dvl, qdo = ch._prep(x["q"], x["k"], x["v"], x["beta"], None, x["do"] if bwd else None,
                                         d["scale"], cfg, bwd=bwd)  # fmt: skip
        _sync()
        out[tag] = dict(w=w.clone(), u=u.clone())
        if bwd:
            out[tag] |= dict(ti=ti.clone(), dvl=dvl.clone(), qdo=qdo.float().clone())
    return {n: _rel(out["bf16"][n], out["ref"][n]) for n in out["ref"]}, 3e-2


def real_out(tuning):
    import torch

    from statetrack.ops._triton import cdiv, kernels_for
    from statetrack.ops.delta_rule.triton import chunk as ch

    x, d = _setup()
    ct = _cfg(d, "tf32x3")
    _, _, w, u, _, _ = ch._prep(x["q"], x["k"], x["v"], x["beta"], None, None, d["scale"], ct, bwd=False)
    hs, _ = ch._state_fwd(x["k"], w, u, None, None, ct, store_ht=False)
    mod = kernels_for(d["dev"], ch._MODULE)
    res = {}
    for tag, c in (("ref", ct), ("bf16", _cfg(d, "bf16", tuning))):
        hsc = hs.to(ch._state_dtype(c))
        o = torch.empty(d["N"], d["T"], d["H"], d["K"], dtype=x["q"].dtype, device=d["dev"])
        mod.chunk_out_kernel[(cdiv(d["K"], c.BV_out), cdiv(d["T"], c.C), d["N"] * d["H"])](
            x["q"], x["k"], u, hsc, hsc, o, d["scale"], d["T"], **ch._common(c, d["H"], d["K"], d["K"], 1), BC=c.BC,
            BK=c.BK, BV=c.BV_out, USE_G=False, **ch._in_args(x["q"].dtype, c.precision), num_warps=c.warps_out,
            num_stages=1)  # fmt: skip
        _sync()
        res[tag] = o.clone()
    return {"o": _rel(res["bf16"], res["ref"])}, 3e-2


def real_grad(tuning):
    import torch

    from statetrack.ops._triton import cdiv, kernels_for, loop_bound
    from statetrack.ops.delta_rule.triton import chunk as ch

    x, d = _setup()
    ct = _cfg(d, "tf32x3")
    q, k, v, beta, do = x["q"], x["k"], x["v"], x["beta"], x["do"]
    _, ti, w, u, dvl, dhs = ch._prep(q, k, v, beta, None, do, d["scale"], ct, bwd=True)
    hs, _ = ch._state_fwd(k, w, u, None, None, ct, store_ht=False)
    mod = kernels_for(d["dev"], ch._MODULE)
    NC = cdiv(d["T"], ct.C)
    mod.chunk_state_bwd_kernel[(cdiv(d["K"], ct.BV_sbwd), d["N"] * d["H"])](
        k, w, dhs, dhs, dvl, dhs, dhs, d["T"], NC, **ch._common(ct, d["H"], d["K"], d["K"], 1), BK=ct.BK,
        BV=ct.BV_sbwd, USE_G=False, USE_DHT=False, STORE_DH0=False, NC_I=loop_bound(NC), num_warps=ct.warps_state,
        num_stages=ct.stages_state)  # fmt: skip
    _sync()
    res = {}
    for tag, c in (("ref", ct), ("bf16", _cfg(d, "bf16", tuning))):
        sd = ch._state_dtype(c)
        dhc, hsc = dhs.to(sd), hs.to(sd)
        dq, dk, dv, db = (torch.empty_like(t) for t in (q, k, v, beta))
        mod.chunk_grad_kernel[(NC, d["N"] * d["H"])](
            q, k, v, beta, dhc, ti, hsc, dhc, u, dvl, do, dq, dk, dv, db, dq, d["scale"], d["T"],
            **ch._common(c, d["H"], d["K"], d["K"], 1), BC=c.BC, BK=c.BK_grad, BV=c.BV_grad, USE_G=False,
            num_warps=c.warps_grad, num_stages=1)  # fmt: skip
        _sync()
        res[tag] = dict(dq=dq.clone(), dk=dk.clone(), dv=dv.clone(), db=db.clone())
    return {n: _rel(res["bf16"][n], res["ref"][n]) for n in res["ref"]}, 3e-2


# ------------------------------------------------------------------------------------------------------ cases
CASES = {
    # name: (what it tests, callable)
    "T1_w_pattern_sameN_control": ("acc->bf16 A, same N (64) as its producer [control]", lambda: tiny_chain(64, 64)),
    "T2_u_pattern_N32_loop": (
        "acc->bf16 A into N=32 dot in a loop (cross-MMA-layout convert)",
        lambda: tiny_chain(64, 32),
    ),
    "T3_u_pattern_N32_noloop": ("as T2, one block, no loop", lambda: tiny_chain(32, 32)),
    "T4_out_pattern_N32_f32B": ("as T3, fp32 B (3 passes, chunk_out P v_new)", lambda: tiny_chain(32, 32, B_F32=True)),
    "T5_dvl_pattern_trans_N32": (
        "tl.trans(acc)->bf16 A (#linear) into N=32 dots in a loop",
        lambda: tiny_chain(64, 32, TRANS=True),
    ),
    "T6_trans_sameN": ("tl.trans(acc)->bf16 A, N=64", lambda: tiny_chain(64, 64, TRANS=True)),
    "T7_u_pattern_8warps": ("as T2 with num_warps=8", lambda: tiny_chain(64, 32, warps=8)),
    "T8_dk_pattern_transA_8warps": ("trans(acc) @ fp32 [64,16], 1 pass, 8 warps (grad :632)", lambda: tiny_transA(8)),
    "T9_dA_pattern_8warps": ("dR=T^T dU (N=32) -> dR @ vn^T (N=64), 8 warps (grad :593/:596)", lambda: tiny_dA(8)),
    "T10_u_pattern_2warps_mmav2": ("as T2 with num_warps=2 (mma.sync, no wgmma)", lambda: tiny_chain(64, 32, warps=2)),
    "T11_prep_w_then_u": ("w (N=64) then u (2 x N=32) from one A, as chunk_prep :317-318", lambda: tiny_wu(32)),
    "T12_prep_w_then_u_BV64": ("as T11 with BV=64 (no N change)", lambda: tiny_wu(64)),
    "T13_u_pattern_N32_swapped": (
        "as T2, each block as trans(B^T A^T): the rounded acc as the smem operand",
        lambda: tiny_chain(64, 32, SWAP=True),
    ),
    "T14_u_pattern_N32_swapped_8warps": ("as T13 with num_warps=8", lambda: tiny_chain(64, 32, SWAP=True, warps=8)),
    "R1_prep_fwd_default": ("prep BWD=False, default (BV_prep=32)", lambda: real_prep(False, None)),
    "R2_prep_fwd_BVprep64": ("prep BWD=False, BV_prep=64", lambda: real_prep(False, {"BV_prep": 64})),
    "R3_prep_fwd_warps2": ("prep BWD=False, warps_prep=2 (no wgmma)", lambda: real_prep(False, {"warps_prep": 2})),
    "R4_prep_bwd_default": ("prep BWD=True, default", lambda: real_prep(True, None)),
    "R5_prep_bwd_BVprep64": ("prep BWD=True, BV_prep=64", lambda: real_prep(True, {"BV_prep": 64})),
    "R6_prep_bwd_warps2": ("prep BWD=True, warps_prep=2 (no wgmma)", lambda: real_prep(True, {"warps_prep": 2})),
    "R7_out_default": ("chunk_out, default (BV_out=32)", lambda: real_out(None)),
    "R8_out_BVout64": ("chunk_out, BV_out=64", lambda: real_out({"BV_out": 64})),
    "R9_out_warps2": ("chunk_out, warps_out=2 (no wgmma)", lambda: real_out({"warps_out": 2})),
    "R10_grad_default": ("chunk_grad, default (BV 32, BK 16, 8 warps)", lambda: real_grad(None)),
    "R11_grad_BV64_BK64_w4": (
        "chunk_grad, BV_grad=64 BK_grad=64 warps_grad=4",
        lambda: real_grad({"BV_grad": 64, "BK_grad": 64, "warps_grad": 4}),
    ),
    "R12_grad_warps4": ("chunk_grad, warps_grad=4", lambda: real_grad({"warps_grad": 4})),
    "R13_prep_bwd_BVprep64_w8": (
        "prep BWD=True, BV_prep=64, warps_prep=8",
        lambda: real_prep(True, {"BV_prep": 64, "warps_prep": 8}),
    ),
    "R14_out_BVout64_w8": ("chunk_out, BV_out=64, warps_out=8", lambda: real_out({"BV_out": 64, "warps_out": 8})),
    "R15_grad_BV64_BK64_w8": (
        "chunk_grad, BV_grad=64 BK_grad=64 warps_grad=8",
        lambda: real_grad({"BV_grad": 64, "BK_grad": 64, "warps_grad": 8}),
    ),
}


def run_case(name):
    """In the child: run one case, print one RESULT line (JSON)."""
    t0 = time.time()
    errs, tol = CASES[name][1]()
    bad = {n: e for n, e in errs.items() if not (e <= tol)}  # nan counts as bad
    print("RESULT " + json.dumps(dict(name=name, status="FAIL" if bad else "PASS", errs=errs, tol=tol,
                                      secs=round(time.time() - t0, 1))), flush=True)  # fmt: skip


def spawn(name, timeout):
    t0 = time.time()
    try:
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--case", name], capture_output=True, text=True,
                           timeout=timeout, env=os.environ.copy())  # fmt: skip
    except subprocess.TimeoutExpired:
        return dict(name=name, status="TIMEOUT", detail=f"no result after {timeout} s (hang or slow compile)")
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = [l for l in (p.stderr or "").splitlines() if l.strip()][-3:]
    detail = f"rc={p.returncode} after {time.time() - t0:.0f} s: " + " | ".join(tail)
    return dict(name=name, status="CRASH", detail=detail)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case")
    ap.add_argument("--only", default="")
    ap.add_argument("--jobs", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=0)
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    if a.case:
        return run_case(a.case)
    names = [n for n in CASES if not a.only or any(s and s in n for s in a.only.split(","))]
    if a.list:
        for n in names:
            print(n, "-", CASES[n][0])
        return
    import torch
    import triton

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() and not INTERP else "none (interpreter)"
    print(f"torch {torch.__version__}  triton {triton.__version__}  device {gpu}  interpreter={INTERP}", flush=True)
    jobs = a.jobs or (min(8, os.cpu_count() or 2) if not INTERP else max(1, min(4, os.cpu_count() or 1)))
    timeout = a.timeout or (120 if not INTERP else 600)
    t0 = time.time()
    with ThreadPoolExecutor(jobs) as ex:
        results = list(ex.map(lambda n: spawn(n, timeout), names))
    for r in results:
        desc = CASES[r["name"]][0]
        if "errs" in r:
            det = " ".join(f"{k}={v:.1e}" for k, v in r["errs"].items()) + f" (tol {r['tol']:.0e}, {r['secs']} s)"
        else:
            det = r["detail"]
        print(f"{r['status']:7s} {r['name']:30s} {det}   [{desc}]", flush=True)
    print(f"total {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
