"""Delta-rule kernels on a GPU: ours (Triton) vs flash-linear-attention vs SDPA; accuracy, speed, memory.

    python benchmarks/kernels.py [--sections accuracy,grads,speed] [--shapes all|issue|small] [--no-fla]
                                 [--deadline 480] [--out benchmarks/results/kernels_h100.md]

Accuracy: bf16 inputs (unit keys; random or rank-1-plus-noise), relative L2 error of o and of the final state
against an fp64 reference computed on the same bf16-rounded inputs (our chunked torch path in fp64, which the test
suite checks against the naive loop to 1e-10); gradients (dq, dk, dv, dbeta) at T = 512. Ours and fla side by side.
Speed: forward+backward ms (triton.testing.do_bench, median, after warm-up; fla autotunes on first use of a shape),
bf16, value checks off; peak memory of one forward+backward beyond the inputs; and for ours the share of the
measured matmul (798 TFLOP/s bf16) and copy-bandwidth (3.0 TB/s) ceilings of the H100 reached by the algorithm's
FLOPs and its compulsory bytes. Everything missing (fla, a refused configuration) is reported as such.
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import sys
import time

import torch
import torch.nn.functional as F

import report
from report import run_sections, save_to, say  # benchmarks/report.py (this script's folder is on sys.path)
from statetrack.ops import delta_rule
from statetrack.ops._checks import value_checks

MATMUL_CEIL = 798e12  # bf16 dense, measured on the device's H100 (KINDS.md)
BW_CEIL = 3.0e12  # device-to-device copy, bytes read + written per second, measured there

# the issue's table, smallest head dim first (results arrive early; one compile per head dim and variant)
ISSUE_SHAPES = [(512, 32, 4, 32), (1024, 40, 4, 32), (512, 512, 4, 32), (8, 1024, 8, 64), (4, 2048, 16, 128)]
ISSUE_SHAPES += [(2, 8192, 16, 128)]
SMALL_SHAPES = [(8, 1024, 8, 64), (512, 32, 4, 32)]

DEVICE = "cuda"  # a smoke test on CPU (under TRITON_INTERPRET=1) may set "cpu"
OURS_KW: dict = {}  # --chunk / --precision / --block-v / --config for our chunked kernels


def fla_modules():
    return report.fla_modules("fla.ops.delta_rule", "fla.ops.gated_delta_rule")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def make_inputs(B, T, H, D, beta_range=(0.0, 2.0), keys="random", n_h=1, gate=False, seed=0):
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
    return {n: None if t is None else t.to(DEVICE) for n, t in x.items()}


def cast(x, dtype, grad=False):
    return {n: None if t is None else t.detach().to(dtype).requires_grad_(grad) for n, t in x.items()}


# ---------------------------------------------------------------------------------------------------------- runners
def ours(x, h0=None, **kw):
    """backend="triton" as the api runs it (token by token for short sequences), or the chunked kernels with
    OURS_KW / kw set."""
    kw = {**OURS_KW, **kw}
    if not kw:
        return delta_rule(**x, initial_state=h0, output_final_state=True, backend="triton")
    return ours_chunk(x, h0, **kw)


def ours_chunk(x, h0=None, **kw):
    """The chunked kernels at any length (OURS_KW, then kw)."""
    kw = {**OURS_KW, **kw}
    from statetrack.ops.delta_rule.api import _normalize
    from statetrack.ops.delta_rule.triton import delta_rule_triton

    k, v, b, _ = _normalize(x["q"], x["k"], x["v"], x["beta"], x["log_decay"], h0, None)
    return delta_rule_triton(x["q"], k, v, b, x["log_decay"], x["q"].shape[-1] ** -0.5, h0, **kw)


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
    return delta_rule(**x64, initial_state=h0, output_final_state=True, backend="torch")


def try_run(fn):
    try:
        return fn(), None
    except Exception as e:  # noqa: BLE001 - report, do not die
        msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        return None, msg[:160]


# --------------------------------------------------------------------------------------------------------- accuracy
def section_accuracy(fla, Ts):
    say("## Accuracy of the forward pass (bf16 inputs, B=1, H=2, D=64; rel. L2 error vs fp64 on the same inputs)")
    say()
    say("o floor = rel. error of the exact o rounded to bf16. Ours: default fp32 path (tf32x3 products);")
    say("ours-tf32: single-pass tf32 products (faster, less exact).")
    say()
    say("| T | keys | beta | o floor | ours o | ours S_T | ours-tf32 o | ours-tf32 S_T | fla o | fla S_T |")
    say("|---|---|---|---|---|---|---|---|---|---|")
    cases = [(Ts[0], "random", r) for r in ((0.0, 1.0), (0.0, 2.0), (1.9, 2.0))]
    cases += [(Ts[0], "rank1", (1.9, 2.0))] + [(t, "random", (1.9, 2.0)) for t in Ts[1:]]
    for T, keys, br in cases:
        x = make_inputs(1, T, 2, 64, beta_range=br, keys=keys)
        xb = cast(x, torch.bfloat16)
        o_r, s_r = reference(cast(xb, torch.float64))
        floor = rel(o_r.bfloat16(), o_r)
        cols = [f"{floor:.1e}"]
        runs = (
            lambda xb: ours(xb),
            lambda xb: ours(xb, precision="tf32"),
            lambda xb: fla_chunk(fla, xb) if fla else None,
        )
        for run in runs:
            res, err = try_run(lambda run=run, xb=xb: run(xb))
            if res is None:
                cols += [err or "n/a", ""]
            else:
                cols += [f"{rel(res[0], o_r):.1e}", f"{rel(res[1], s_r):.1e}"]
        say(f"| {T} | {keys} | [{br[0]}, {br[1]}] | " + " | ".join(cols) + " |")
    say()


def section_grads(fla, T=512):
    say(f"## Accuracy of the gradients (bf16, B=1, T={T}, H=2, D=64, beta ~ U[1.9, 2], random unit keys)")
    say()
    say("| path | o | dq | dk | dv | dbeta | dlog_decay |")
    say("|---|---|---|---|---|---|---|")
    for gate in (False, True):
        x = make_inputs(1, T, 2, 64, beta_range=(1.9, 2.0), gate=gate, seed=1)
        xb = cast(x, torch.bfloat16)
        x64 = cast(xb, torch.float64, grad=True)
        o_r, s_r = reference(x64)
        gen = torch.Generator(device="cpu").manual_seed(2)
        do = torch.randn(o_r.shape, generator=gen, dtype=torch.float64).to(DEVICE)
        names = ["q", "k", "v", "beta"] + (["log_decay"] if gate else [])
        ref_g = torch.autograd.grad((o_r * do).sum(), [x64[n] for n in names])
        runs = [("ours" + (" gated" if gate else ""), lambda xx: ours(xx))]
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
                say(f"| {name} | {err} | | | | | |")
                continue
            o, grads = res
            cols = [f"{rel(o, o_r):.1e}"] + [
                "n/a" if gr is None else f"{rel(gr, rg):.1e}" for gr, rg in zip(grads, ref_g, strict=True)
            ]
            cols += [""] * (6 - len(cols))
            say(f"| {name} | " + " | ".join(cols) + " |")
    say()


# ------------------------------------------------------------------------------------------------------------ speed
def bench_fwd_bwd(fn, x, names):
    """(fwd+bwd ms, fwd ms, peak MiB beyond inputs) of o = fn(x)[0]; backward with a fixed random do."""
    from triton.testing import do_bench

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
    return do_bench(fb, warmup=25, rep=100), do_bench(f, warmup=25, rep=100), peak


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


def section_speed(fla, shapes, deadline, variants=("ours", "chunk", "gated", "nh2", "fla", "sdpa")):
    say("## Speed: forward+backward ms (fwd ms) [peak MiB], bf16")
    say()
    say("ours: backend='triton' as the api runs it (token by token up to 256 sub-steps, else chunked); chunk = the")
    say("chunked kernels at every length; gated = with a scalar gate; n_h=2 = DeltaProduct with two Householders per")
    say("token at the same width. %MM / %BW: the algorithm's FLOPs and compulsory bytes over our time, as shares of")
    say("the measured ceilings. Best fla = fastest of its paths that ran.")
    say()
    hdr = (
        "| B, T, H, D | ours | ours chunk | ours gated | ours n_h=2 | fla chunk"
        " | fla fused_recurrent | fla gated (neg eig) | SDPA |"
    )
    say(hdr + " ours %MM / %BW | speed-up vs best fla |")
    say("|" + "---|" * 11)
    t_start = time.time()
    for B, T, H, D in shapes:
        cells, ours_ms, fla_best = [], None, None
        runs = [
            ("ours", lambda x: ours(x), {}),
            ("ours chunk", lambda x: ours_chunk(x), {}),
            ("ours gated", lambda x: ours(x), {"gate": True}),
            ("ours n_h=2", lambda x: ours(x), {"n_h": 2}),
        ]
        if fla:
            runs += [
                ("fla chunk", lambda x: fla_chunk(fla, x), {}),
                ("fla rec", lambda x: fla_recurrent(fla, x), {}),
                ("fla gated", lambda x: fla_gated(fla, x), {"gate": True}),
            ]
        else:
            runs += [("fla chunk", None, {}), ("fla rec", None, {}), ("fla gated", None, {})]
        runs.append(("sdpa", "sdpa", {}))
        for name, fn, kw in runs:
            key = {"ours gated": "gated", "ours n_h=2": "nh2", "sdpa": "sdpa", "ours": "ours", "ours chunk": "chunk"}
            key = key.get(name, "fla")
            if key not in variants:
                cells.append("-")
                continue
            if fn is None:
                cells.append("no fla")
                continue
            if name.startswith("fla") and time.time() - t_start > deadline:
                cells.append("skipped (deadline)")
                continue
            if name == "fla rec" and T > 512:
                cells.append("-")
                continue
            x = cast(make_inputs(B, T, H, D, beta_range=(0.0, 2.0), **kw), torch.bfloat16, grad=True)
            names = ["q", "k", "v", "beta"]
            if name == "fla gated":
                x["log_decay"] = x["log_decay"].float().detach().requires_grad_()
            if fn == "sdpa":
                qs, ks, vs = (x[n].transpose(1, 2).contiguous().detach().requires_grad_() for n in ("q", "k", "v"))
                x = {"q": qs, "k": ks, "v": vs}
                names = ["q", "k", "v"]
                fn = lambda x: (F.scaled_dot_product_attention(x["q"], x["k"], x["v"], is_causal=True),)  # noqa: E731
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
        extra = "-"
        if ours_ms is not None:
            fl, by = flops_bytes(B, T, H, D)
            extra = f"{100 * fl / (ours_ms * 1e-3) / MATMUL_CEIL:.1f}% / {100 * by / (ours_ms * 1e-3) / BW_CEIL:.1f}%"
        speed = f"{fla_best / ours_ms:.2f}x" if (ours_ms and fla_best) else "-"
        say(f"| {B}, {T}, {H}, {D} | " + " | ".join(cells) + f" | {extra} | {speed} |")
        print(f"  (row done at {time.time() - t_start:.0f} s)", flush=True)
    say()


def _shapes(args):
    shapes = ISSUE_SHAPES if args.shapes == "issue" else SMALL_SHAPES
    return shapes if args.rows is None else [shapes[int(i)] for i in args.rows.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", default="accuracy,grads,speed")
    ap.add_argument("--shapes", default="issue", choices=("issue", "small"))
    ap.add_argument("--accuracy-T", default="4096,8192")
    ap.add_argument("--no-fla", action="store_true")
    ap.add_argument("--deadline", type=float, default=480.0, help="seconds after which fla speed runs are skipped")
    ap.add_argument("--chunk", type=int, default=None, help="sub-steps per chunk of our kernels (16, 32, 64)")
    ap.add_argument("--precision", default=None, help="fp32 dot precision of our kernels (tf32x3, ieee, tf32)")
    ap.add_argument("--block-v", type=int, default=None, help="cap on the V-block widths of our chunked kernels")
    ap.add_argument(
        "--config", default=None, help="Config overrides of our chunked kernels, e.g. BK_grad=32,BV_grad=64"
    )
    ap.add_argument("--variants", default="ours,chunk,gated,nh2,fla,sdpa", help="columns of the speed table to run")
    ap.add_argument("--rows", default=None, help="indices of the shapes to run, e.g. 0,3 (default: all)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    save_to(args.out)  # the report file grows line by line: a run cut short keeps what it measured
    if not torch.cuda.is_available():
        sys.exit("benchmarks/kernels.py needs a CUDA GPU")
    import triton

    fla, fla_version = (None, "disabled (--no-fla)") if args.no_fla else fla_modules()
    overrides = None
    if args.config:
        overrides = {
            k: int(v) if v.lstrip("-").isdigit() else v for k, v in (kv.split("=") for kv in args.config.split(","))
        }
    knobs = (("chunk", args.chunk), ("precision", args.precision), ("block_v", args.block_v), ("config", overrides))
    OURS_KW.update({k: v for k, v in knobs if v is not None})
    say("# statetrack delta-rule kernels vs flash-linear-attention")
    say()
    say(f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
    say(f"- device: {torch.cuda.get_device_name()} ({torch.cuda.get_device_properties(0).multi_processor_count} SMs)")
    say(
        f"- torch {torch.__version__}, triton {triton.__version__}, fla {fla_version}, "
        f"python {platform.python_version()}"
    )
    say(f"- command: `python {' '.join(sys.argv)}`")
    say()
    torch.backends.cuda.matmul.allow_tf32 = False
    t0 = time.time()
    secs = args.sections.split(",")
    run_sections([(name, fn) for name, fn in (
        ("accuracy", lambda: section_accuracy(fla, [int(t) for t in args.accuracy_T.split(",")])),
        ("grads", lambda: section_grads(fla)),
        (
            "speed",
            lambda: section_speed(fla, _shapes(args), args.deadline, args.variants.split(",")),
        ),
    ) if name in secs])  # fmt: skip
    say(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
