"""Delta-rule kernels on a GPU: ours (Triton) vs flash-linear-attention vs SDPA; accuracy, speed, memory.

    python -m benchmarks.delta_rule_kernels [--sections accuracy,grads,speed] [--shapes issue|short|small]
        [--head-dim 64] [--variants ours,chunk,gated,nh2,fla,sdpa] [--no-fla] [--deadline 480] [--out FILE.md]
    python -m benchmarks.delta_rule_kernels --sections speed --shapes short \
        --variants ours,recurrent,gated,nh2,chunk,torch,fla

Accuracy: bf16 inputs (unit keys; random or rank-1-plus-noise), relative L2 error of o and of the final state
against an fp64 reference computed on the same bf16-rounded inputs (our chunked torch path in fp64, which the test
suite checks against the naive loop to 1e-10); gradients (dq, dk, dv, dbeta) at T = 512. Ours and fla side by side.
Speed: forward+backward ms (triton.testing.do_bench, median, after warm-up; fla autotunes on first use of a shape),
bf16, value checks off; peak memory of one forward+backward beyond the inputs; and for ours the share of the
measured matmul (798 TFLOP/s bf16) and copy-bandwidth (3.0 TB/s) ceilings of the H100 reached by the algorithm's
FLOPs and its compulsory bytes. Everything missing (fla, a refused configuration) is reported as such.

Shapes: "issue" (the kernel issue's table, 32 to 8192 tokens), "short" (the state-tracking experiments: many
sequences of 32-512 tokens, small heads, where backend="triton" runs token by token), "small" (two of them).
Ours is ``statetrack.ops.delta_rule(backend="triton")`` with its documented tuning arguments: --chunk-size,
--precision and --triton-config go to every "ours" column (an explicit chunk setting makes "auto" take the
chunked kernels; a setting the column's algorithm does not have fails that cell).
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from statetrack.ops import delta_rule, value_checks

from .harness import Report, anchor, has_cuda, parser, time_ms, try_run

MATMUL_CEIL = 798e12  # bf16 dense, measured on the device's H100 (KINDS.md)
BW_CEIL = 3.0e12  # device-to-device copy, bytes read + written per second, measured there

# the issue's table, smallest head dim first (results arrive early; one compile per head dim and variant)
ISSUE_SHAPES = [(512, 32, 4, 32), (1024, 40, 4, 32), (512, 512, 4, 32), (8, 1024, 8, 64), (4, 2048, 16, 128)]
ISSUE_SHAPES += [(2, 8192, 16, 128)]
SHORT_SHAPES = [(1024, 40, 4, 32), (512, 32, 4, 32), (512, 64, 4, 32), (512, 128, 4, 32), (512, 256, 4, 32),
                (512, 512, 4, 32), (64, 256, 8, 64), (8, 1024, 8, 64)]  # fmt: skip
SMALL_SHAPES = [(8, 1024, 8, 64), (512, 32, 4, 32)]
SHAPES = {"issue": ISSUE_SHAPES, "short": SHORT_SHAPES, "small": SMALL_SHAPES}


def fla_modules():
    return anchor("fla.ops.delta_rule", "fla.ops.gated_delta_rule")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def make_inputs(B, T, H, D, beta_range=(0.0, 2.0), keys="random", n_h=1, gate=False, seed=0, device="cuda"):
    """fp64 inputs on ``device``: q, k (unit), v, beta, log_decay or None."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    shp = (B, T, H, D) if n_h == 1 else (B, T, n_h, H, D)
    raw = torch.randn(shp, generator=g, dtype=torch.float64)
    if keys == "rank1":
        raw = torch.randn(D, generator=g, dtype=torch.float64) + 0.05 * raw
    lo, hi = beta_range
    x = {
        "q": torch.randn(B, T, H, D, generator=g, dtype=torch.float64),
        "k": F.normalize(raw, dim=-1),
        "v": torch.randn(shp, generator=g, dtype=torch.float64),
        "beta": lo + (hi - lo) * torch.rand(shp[:-1], generator=g, dtype=torch.float64),
        "log_decay": F.logsigmoid(4 + torch.randn(B, T, H, generator=g, dtype=torch.float64)) if gate else None,
    }
    return {n: None if t is None else t.to(device) for n, t in x.items()}


def cast(x, dtype, grad=False):
    return {n: None if t is None else t.detach().to(dtype).requires_grad_(grad) for n, t in x.items()}


# ---------------------------------------------------------------------------------------------------------- runners
def ours(x, h0=None, **kw):
    """``delta_rule(backend="triton")`` with the tuning arguments ``kw`` (algorithm, chunk_size, precision,
    triton_config): "auto" picks token by token for short sequences, the chunked kernels beyond."""
    return delta_rule(**x, initial_state=h0, output_final_state=True, backend="triton", **kw)


def torch_chunk(x, h0=None):
    return delta_rule(**x, initial_state=h0, output_final_state=True, backend="torch")


def fla_chunk(fla, x, h0=None):
    return fla[0].chunk_delta_rule(
        x["q"], x["k"], x["v"], x["beta"], initial_state=h0, output_final_state=True, scale=x["q"].shape[-1] ** -0.5
    )


def fla_recurrent(fla, x, h0=None):
    return fla[0].fused_recurrent_delta_rule(
        x["q"], x["k"], x["v"], x["beta"], initial_state=h0, output_final_state=True, scale=x["q"].shape[-1] ** -0.5
    )


def fla_gated(fla, x, h0=None):
    """Gated DeltaNet with negative eigenvalues: fla wants the pre-sigmoid beta and doubles sigmoid(.) in-kernel."""
    b = x["beta"].float().clamp(1e-4, 2 - 1e-4) / 2
    g = x["log_decay"] if x["log_decay"] is not None else torch.zeros_like(x["beta"], dtype=torch.float32)
    return fla[1].chunk_gated_delta_rule(
        x["q"],
        x["k"],
        x["v"],
        g.float(),
        torch.log(b / (1 - b)).to(x["beta"].dtype),
        scale=x["q"].shape[-1] ** -0.5,
        initial_state=h0,
        output_final_state=True,
        use_beta_sigmoid_in_kernel=True,
        allow_neg_eigval=True,
    )


def reference(x64, h0=None):
    return torch_chunk(x64, h0)


# --------------------------------------------------------------------------------------------------------- accuracy
def _ours_name(kw: dict) -> str:
    """What the "ours" columns run, in words."""
    p = kw.get("precision")
    if p is None:
        return "precision='auto' (bf16 for these bf16 inputs on a GPU: triton.auto_precision)"
    return "tf32x3 products" if p == "tf32x3" else f"precision={p!r}"


def section_accuracy(rep: Report, fla, Ts, kw: dict, D: int = 64):
    rep.say(f"## Accuracy of the forward pass (bf16 inputs, B=1, H=2, D={D}; rel. L2 error vs fp64 on the same inputs)")
    rep.say()
    rep.say(f"o floor = rel. error of the exact o rounded to bf16. Ours: {_ours_name(kw)};")
    rep.say("ours-tf32: single-pass tf32 products (faster, less exact).")
    rep.say()
    rep.table("T", "keys", "beta", "o floor", "ours o", "ours S_T", "ours-tf32 o", "ours-tf32 S_T", "fla o", "fla S_T")
    cases = [(Ts[0], "random", r) for r in ((0.0, 1.0), (0.0, 2.0), (1.9, 2.0))]
    cases += [(Ts[0], "rank1", (1.9, 2.0))] + [(t, "random", (1.9, 2.0)) for t in Ts[1:]]
    for T, keys, br in cases:
        x = make_inputs(1, T, 2, D, beta_range=br, keys=keys)
        xb = cast(x, torch.bfloat16)
        o_r, s_r = reference(cast(xb, torch.float64))
        floor = rel(o_r.bfloat16(), o_r)
        cols = [f"{floor:.1e}"]
        runs = (
            lambda xb: ours(xb, **kw),
            lambda xb: ours(xb, **{**kw, "precision": "tf32"}),
            lambda xb: fla_chunk(fla, xb) if fla else None,
        )
        for run in runs:
            res, err = try_run(lambda run=run, xb=xb: run(xb))
            if res is None:
                cols += [err or "n/a", ""]
            else:
                cols += [f"{rel(res[0], o_r):.1e}", f"{rel(res[1], s_r):.1e}"]
        rep.row(T, keys, f"[{br[0]}, {br[1]}]", *cols)
    rep.say()


def section_grads(rep: Report, fla, kw: dict, T=512, D: int = 64):
    rep.say(f"## Accuracy of the gradients (bf16, B=1, T={T}, H=2, D={D}, beta ~ U[1.9, 2], random unit keys)")
    rep.say()
    rep.table("path", "o", "dq", "dk", "dv", "dbeta", "dlog_decay")
    for gate in (False, True):
        x = make_inputs(1, T, 2, D, beta_range=(1.9, 2.0), gate=gate, seed=1)
        xb = cast(x, torch.bfloat16)
        x64 = cast(xb, torch.float64, grad=True)
        o_r, s_r = reference(x64)
        gen = torch.Generator(device="cpu").manual_seed(2)
        do = torch.randn(o_r.shape, generator=gen, dtype=torch.float64).to(o_r.device)
        names = ["q", "k", "v", "beta"] + (["log_decay"] if gate else [])
        ref_g = torch.autograd.grad((o_r * do).sum(), [x64[n] for n in names])
        runs = [("ours" + (" gated" if gate else ""), lambda xx: ours(xx, **kw))]
        if fla:
            runs.append(
                (
                    "fla gated (neg eig)" if gate else "fla chunk",
                    (lambda xx: fla_gated(fla, xx)) if gate else (lambda xx: fla_chunk(fla, xx)),
                )
            )
        for name, fn in runs:
            xx = cast(xb, torch.bfloat16, grad=True)
            if name.startswith("fla gated"):
                xx["log_decay"] = xx["log_decay"].float().detach().requires_grad_()

            def go(fn=fn, xx=xx, do=do, names=names):
                o, _ = fn(xx)
                return o, torch.autograd.grad((o.double() * do).sum(), [xx[n] for n in names], allow_unused=True)

            res, err = try_run(go)
            if res is None:
                rep.row(name, err, "", "", "", "", "")
                continue
            o, grads = res
            cols = [f"{rel(o, o_r):.1e}"] + [
                "n/a" if gr is None else f"{rel(gr, rg):.1e}" for gr, rg in zip(grads, ref_g, strict=True)
            ]
            cols += [""] * (6 - len(cols))
            rep.row(name, *cols)
    rep.say()


# ------------------------------------------------------------------------------------------------------------ speed
def bench_fwd_bwd(fn, x, names):
    """(fwd+bwd ms, fwd ms, peak MiB beyond inputs) of o = fn(x)[0]; backward with a fixed random do."""
    leaves = [x[n] for n in names]
    o = fn(x)[0]
    do = torch.randn_like(o)

    def fb():
        out = fn(x)[0]
        torch.autograd.grad(out, leaves, do)

    def f():
        with torch.no_grad():
            fn(x)

    fb()
    torch.cuda.synchronize()
    del o
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fb()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    return time_ms(fb), time_ms(f), peak


def flops_bytes(B, T, H, D, n_h=1, C=64):
    """Algorithmic FLOPs (fwd + bwd = 3 x fwd) and compulsory bytes (bf16 inputs/outputs/grads) of the chunk form."""
    L = T * n_h
    NC = math.ceil(L / C)
    per_chunk = 4 * C * C * D + 4 * C * C * D + 6 * C * D * D + 2 * C**3 / 3  # kk, qk; TR, PU; KS, QS, K^T U; inverse
    fwd = B * H * NC * per_chunk
    tok = B * T * H
    fwd_bytes = tok * 2 * (D + n_h * (D + D + 1) + D)  # q, k, v, beta in; o out
    bwd_bytes = tok * 2 * (D + n_h * (2 * D + 1) + D) + tok * 2 * (D + n_h * (2 * D + 1))
    return 3 * fwd, fwd_bytes + bwd_bytes


def sdpa(x):
    return (F.scaled_dot_product_attention(x["q"], x["k"], x["v"], is_causal=True),)


# (variant key, column, runner(fla, kw) -> fn(x) or None without fla, input options); the table shows the
# variants asked for, in this order
COLUMNS = [
    ("ours", "ours", lambda fla, kw: lambda x: ours(x, **kw), {}),
    ("recurrent", "ours recurrent", lambda fla, kw: lambda x: ours(x, **{"algorithm": "recurrent", **kw}), {}),
    ("chunk", "ours chunk", lambda fla, kw: lambda x: ours(x, **{"algorithm": "chunk", **kw}), {}),
    ("gated", "ours gated", lambda fla, kw: lambda x: ours(x, **kw), {"gate": True}),
    ("nh2", "ours n_h=2", lambda fla, kw: lambda x: ours(x, **kw), {"n_h": 2}),
    ("torch", "torch chunked", lambda fla, kw: torch_chunk, {}),
    ("fla", "fla chunk", lambda fla, kw: fla and (lambda x: fla_chunk(fla, x)), {}),
    ("fla", "fla fused_recurrent", lambda fla, kw: fla and (lambda x: fla_recurrent(fla, x)), {}),
    ("fla", "fla gated (neg eig)", lambda fla, kw: fla and (lambda x: fla_gated(fla, x)), {"gate": True}),
    ("sdpa", "SDPA", lambda fla, kw: sdpa, {}),
]


def section_speed(rep: Report, fla, shapes, deadline, variants, kw: dict):
    rep.say("## Speed: forward+backward ms (fwd ms) [peak MiB], bf16")
    rep.say()
    rep.say("ours: backend='triton' as the api runs it (token by token up to 256 sub-steps, else chunked); chunk = the")
    rep.say("chunked kernels at every length; recurrent = token by token at every length; gated = with a scalar gate;")
    rep.say("n_h=2 = DeltaProduct with two Householders per token at the same width; torch chunked = backend='torch'.")
    rep.say("%MM / %BW: the algorithm's FLOPs and compulsory bytes over our time, as shares of the measured ceilings.")
    rep.say("Best fla = fastest of its paths that ran.")
    rep.say()
    cols = [c for c in COLUMNS if c[0] in variants]
    rep.table("B, T, H, D", *(c[1] for c in cols), "ours %MM / %BW", "speed-up vs best fla")
    t_start = time.time()
    for B, T, H, D in shapes:
        cells, ours_ms, fla_best = [], None, None
        for _, name, make, opts in cols:
            fn = make(fla, kw)
            if fn is None:
                cells.append("no fla")
                continue
            if name.startswith("fla") and time.time() - t_start > deadline:
                cells.append("skipped (deadline)")
                continue
            if name == "fla fused_recurrent" and T > 512:
                cells.append("-")
                continue
            x = cast(make_inputs(B, T, H, D, beta_range=(0.0, 2.0), **opts), torch.bfloat16, grad=True)
            names = ["q", "k", "v", "beta"]
            if name == "fla gated (neg eig)":
                x["log_decay"] = x["log_decay"].float().detach().requires_grad_()
            if name == "SDPA":
                x = {n: x[n].transpose(1, 2).contiguous().detach().requires_grad_() for n in ("q", "k", "v")}
                names = ["q", "k", "v"]
            with value_checks(False):
                res, err = try_run(lambda fn=fn, x=x, names=names: bench_fwd_bwd(fn, x, names))
            if res is None:
                cells.append(f"failed: {err}")
                continue
            fb, f, peak = res
            cells.append(f"{fb:.3f} ({f:.3f}) [{peak:.0f}]")
            if name == "ours":
                ours_ms = fb
            if name.startswith("fla"):
                fla_best = fb if fla_best is None else min(fla_best, fb)
            del x
        extra = "-"
        if ours_ms is not None:
            fl, by = flops_bytes(B, T, H, D)
            extra = f"{100 * fl / (ours_ms * 1e-3) / MATMUL_CEIL:.1f}% / {100 * by / (ours_ms * 1e-3) / BW_CEIL:.1f}%"
        speed = f"{fla_best / ours_ms:.2f}x" if (ours_ms and fla_best) else "-"
        rep.row(f"{B}, {T}, {H}, {D}", *cells, extra, speed)
        print(f"  (row done at {time.time() - t_start:.0f} s)", flush=True)
        torch.cuda.empty_cache()
    rep.say()


def pairs(text: str | None) -> dict | None:
    """ "BK_grad=32,BV_grad=64" -> {"BK_grad": 32, "BV_grad": 64}"""
    if not text:
        return None
    return {k.strip(): int(v) if v.strip().lstrip("-").isdigit() else v.strip()
            for k, v in (kv.split("=") for kv in text.split(",") if kv.strip())}  # fmt: skip


def build_parser():
    ap = parser(__doc__)
    ap.add_argument("--sections", default="accuracy,grads,speed")
    ap.add_argument("--shapes", default="issue", choices=tuple(SHAPES))
    ap.add_argument("--rows", default=None, help="indices of the shapes to run, e.g. 0,3 (default: all)")
    ap.add_argument("--accuracy-T", default="4096,8192")
    ap.add_argument("--head-dim", type=int, default=64, help="D of the accuracy and gradient sections")
    ap.add_argument("--no-fla", action="store_true")
    ap.add_argument("--deadline", type=float, default=480.0, help="seconds after which fla speed runs are skipped")
    ap.add_argument("--variants", default="ours,chunk,gated,nh2,fla,sdpa",
                    help="columns of the speed table: " + ",".join(dict.fromkeys(c[0] for c in COLUMNS)))  # fmt: skip
    ap.add_argument("--chunk-size", type=int, default=None, help="delta_rule(chunk_size=): tokens per chunk")
    ap.add_argument("--precision", default=None, help="delta_rule(precision=): tf32x3, tf32, ieee or bf16")
    ap.add_argument("--triton-config", default=None, help="delta_rule(triton_config=), e.g. BK_grad=32,BV_grad=64 "
                    "or block_v=32 (chunked kernels), BV=32,warps=2 (token by token)")  # fmt: skip
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not has_cuda("benchmarks.delta_rule_kernels"):
        return 2
    fla, fla_version = (None, "disabled (--no-fla)") if args.no_fla else fla_modules()
    kw = {"chunk_size": args.chunk_size, "precision": args.precision, "triton_config": pairs(args.triton_config)}
    kw = {k: v for k, v in kw.items() if v is not None}
    shapes = SHAPES[args.shapes]
    shapes = shapes if args.rows is None else [shapes[int(i)] for i in args.rows.split(",")]
    rep = Report("delta_rule_kernels", "# statetrack delta-rule kernels vs flash-linear-attention", args.out,
                 print_only=args.print_only, argv=argv)  # fmt: skip
    rep.header(f"our tuning arguments: {kw or 'none (the defaults)'}", fla=fla_version)
    torch.backends.cuda.matmul.allow_tf32 = False
    secs = args.sections.split(",")
    if "accuracy" in secs:
        with rep.section("accuracy"):
            section_accuracy(rep, fla, [int(t) for t in args.accuracy_T.split(",")], kw, args.head_dim)
    if "grads" in secs:
        with rep.section("grads"):
            section_grads(rep, fla, kw, D=args.head_dim)
    if "speed" in secs:
        with rep.section("speed"):
            section_speed(rep, fla, shapes, args.deadline, args.variants.split(","), kw)
    return rep.done()


if __name__ == "__main__":
    raise SystemExit(main())
