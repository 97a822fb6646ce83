"""Signed diagonal scan and Mamba-1 selective scan on a GPU: ours (Triton) vs our chunked torch path (and fla).

    python -m benchmarks.scans [--B 8 --T 4096 --D 2048 --N 16] [--no-torch] [--no-fla] [--sweep] [--out FILE.md]
    TRITON_INTERPRET=1 python -m benchmarks.scans --smoke     # CPU: tiny shapes (ours only under the interpreter)

Speed: forward and forward+backward ms (triton.testing.do_bench, median, after warm-up; value checks off), bf16
inputs (A, D fp32 as in Mamba), on the same inputs for every path. GB/s = the op's compulsory bytes (every input
read once, every output written once; states and scratch excluded) over the time; % BW = that over the copy
bandwidth measured in the same run (a large bf16 tensor's .copy_: bytes read + written per second). Peak MiB: the
largest allocation of one forward+backward beyond its inputs. The torch path is our chunked PyTorch scan
(``backend="torch"``), the CPU path. fla, where importable, is a reference point with positive decays only:
``chunk_hgrn`` / ``fused_recurrent_hgrn`` (h = exp(g) h + x: the diag scan's bytes) and ``chunk_simple_gla`` (Mamba-2
style, one scalar decay per head of 64 channels, state of the same size as the selective scan's: a different op).
``--sweep`` times our kernels over a few tile configurations (to choose defaults), through the ops' documented
``algorithm=`` and ``triton_config=`` arguments. ``--smoke`` runs everything at tiny shapes on the CPU to check the
script itself (printed only, unless --out); its times mean nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from statetrack.ops import diag_scan, selective_scan, value_checks

from .harness import Report, anchor, interpreter, parser, peak_mib, smoke_note, smoke_or_cuda, time_ms, try_run


def copy_bandwidth(mib: int, dev: str) -> float:
    """Bytes read + written per second by dst.copy_(src) of a ``mib`` MiB bf16 tensor."""
    n = mib * 2**20 // 2
    src = torch.randn(n, device=dev, dtype=torch.float32).to(torch.bfloat16)
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), cuda=dev == "cuda")
    return 2 * n * 2 / (ms * 1e-3)


def fla_ops():
    return anchor("fla.ops.hgrn", "fla.ops.simple_gla")


# ---------------------------------------------------------------------------------------------------------- inputs
def diag_inputs(B, T, D, dev, dtype=torch.bfloat16, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    a = (2 * torch.rand(B, T, D, generator=g) - 1).to(dev, dtype)
    b = torch.randn(B, T, D, generator=g).to(dev, dtype)
    dh = torch.randn(B, T, D, generator=g).to(dev, dtype)
    return a, b, dh


def selective_inputs(B, T, Dm, N, dev, dtype=torch.bfloat16, seed=0):
    """u, delta, A, B, C, D, z (A and D fp32, the rest ``dtype``) and a cotangent dy."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    u, z, dy = r(B, T, Dm), r(B, T, Dm), r(B, T, Dm)
    delta = F.softplus(r(B, T, Dm) - 2)
    A = -torch.exp(0.5 * r(Dm, N))
    Bm, Cm = r(B, T, N), r(B, T, N)
    xs = [u, delta, A, Bm, Cm, r(Dm), z]
    xs = [x.to(dev, torch.float32 if i in (2, 5) else dtype) for i, x in enumerate(xs)]
    return xs, dy.to(dev, dtype)


def leaves(xs, grad):
    return [x.detach().requires_grad_(grad) for x in xs]


# ------------------------------------------------------------------------------------------------------ the paths
def diag_paths(fla, torch_ok):
    paths = {"ours": lambda a, b: diag_scan(a, b, backend="triton")[0]}
    if torch_ok:
        paths["torch"] = lambda a, b: diag_scan(a, b, backend="torch")[0]
    if fla:
        # positive decays only: exp(g) with g = log|a|
        paths["fla chunk_hgrn"] = lambda a, b: fla[0].chunk_hgrn(b, torch.log(a.abs().clamp_min(1e-3)))[0]
        paths["fla fused_recurrent_hgrn"] = lambda a, b: fla[0].fused_recurrent_hgrn(
            b, torch.log(a.abs().clamp_min(1e-3))
        )[0]
    return paths


def selective_paths(fla, torch_ok):
    def ours(u, delta, A, B, C, D, z):
        return selective_scan(u, delta, A, B, C, D=D, z=z, backend="triton")[0]

    def torch_path(u, delta, A, B, C, D, z):
        return selective_scan(u, delta, A, B, C, D=D, z=z, backend="torch")[0]

    def fla_gla(u, delta, A, B, C, D, z):
        """Mamba-2 style with the same state size: heads of 64 channels, one decay per head (mean of delta A)."""
        Bt, T, Dm = u.shape
        H = max(1, Dm // 64)
        q = C[:, :, None, :].expand(Bt, T, H, C.shape[-1]).contiguous()
        k = B[:, :, None, :].expand(Bt, T, H, B.shape[-1]).contiguous()
        v = (delta * u).view(Bt, T, H, Dm // H)
        g = (delta.float().view(Bt, T, H, -1).mean(-1) * A.mean()).contiguous()
        o = fla[1].chunk_simple_gla(q, k, v, g, scale=1.0)[0]
        return o.reshape(Bt, T, Dm) + D * u

    paths = {"ours": ours}
    if torch_ok:
        paths["torch"] = torch_path
    if fla:
        paths["fla chunk_simple_gla"] = fla_gla
    return paths


def diag_bytes(B, T, D, item):
    """Compulsory bytes: forward reads a, b and writes h; the backward reads a, b (or h), dh, writes da, db."""
    n = B * T * D * item
    return 3 * n, 8 * n


def selective_bytes(B, T, Dm, N, item, path):
    """Forward: u, delta, z, B, C in, y out. Backward: u, delta, z, B, C, dy in, du, ddelta, dz, dB, dC out.
    For fla's simple_gla: q, k (N per head), v in, o out (its own op)."""
    n, m = B * T * Dm * item, B * T * N * item
    if path.startswith("fla"):
        H = max(1, Dm // 64)
        qk = 2 * B * T * H * N * item
        return qk + 2 * n, 2 * (qk + 2 * n) + qk + n
    return 4 * n + 2 * m, (4 * n + 2 * m) + (7 * n + 4 * m)


# ------------------------------------------------------------------------------------------------------- sections
def row(rep, op, pas, path, ms, nbytes, bw, peak=None, note=""):
    if ms is None:
        rep.row(op, pas, path, note, "", "", "", "")
        return
    gbs = nbytes / (ms * 1e-3) / 1e9
    pk = "" if peak is None else f"{peak:.0f}"
    rep.row(op, pas, path, f"{ms:.3f}", f"{gbs:.4g}", f"{100 * gbs * 1e9 / bw:.3g}%", pk, note)


def section_speed(rep: Report, args, fla, bw, dev):
    B, T, D, N = args.B, args.T, args.D, args.N
    dt = torch.bfloat16
    item = 2
    cuda = dev == "cuda"
    rep.say(f"## Speed: B={B}, T={T}, D={D} (selective: Dm={D}, N={N}), bf16")
    rep.say()
    rep.table("op", "pass", "path", "ms", "GB/s", "% copy BW", "peak MiB (fwd+bwd)", "note")
    torch_ok = not args.no_torch
    ours_ok = cuda or interpreter()

    a, b, dh = diag_inputs(B, T, D, dev, dt)
    for name, fn in diag_paths(fla, torch_ok).items():
        if name == "ours" and not ours_ok:
            row(rep, "diag_scan", "fwd", name, None, 0, bw, note="needs CUDA or TRITON_INTERPRET=1")
            continue
        fb, fbb = diag_bytes(B, T, D, item)
        x = leaves([a, b], False)
        res, err = try_run(lambda fn=fn, x=x: time_ms(lambda: fn(*x), cuda=cuda), 120)
        note = ""
        if name == "torch" and res is not None and ours_ok:
            h_t, h_o = fn(*x).float(), diag_scan(*x, backend="triton")[0].float()
            note = f"ours vs torch: rel {float((h_t - h_o).norm() / h_t.norm()):.1e}"
        row(rep, "diag_scan", "fwd", name, res, fb, bw, note=note if res is not None else err)
        xg = leaves([a, b], True)

        def step(fn=fn, xg=xg, dh=dh):
            h = fn(*xg)
            torch.autograd.grad(h, xg, dh)

        res, err = try_run(lambda step=step: time_ms(step, cuda=cuda), 120)
        pk = peak_mib(step, cuda=cuda) if res is not None else None
        row(rep, "diag_scan", "fwd+bwd", name, res, fbb, bw, pk, note="" if res is not None else err)
    del a, b, dh

    xs, dy = selective_inputs(B, T, D, N, dev, dt)
    for name, fn in selective_paths(fla, torch_ok).items():
        if name == "ours" and not ours_ok:
            row(rep, "selective_scan", "fwd", name, None, 0, bw, note="needs CUDA or TRITON_INTERPRET=1")
            continue
        fb, fbb = selective_bytes(B, T, D, N, item, name)
        x = leaves(xs, False)
        res, err = try_run(lambda fn=fn, x=x: time_ms(lambda: fn(*x), cuda=cuda), 120)
        note = ""
        if name == "torch" and res is not None and ours_ok:
            y_t, y_o = fn(*x).float(), selective_paths(None, False)["ours"](*x).float()
            note = f"ours vs torch: rel {float((y_t - y_o).norm() / y_t.norm()):.1e}"
        row(rep, "selective_scan", "fwd", name, res, fb, bw, note=note if res is not None else err)
        xg = leaves(xs, True)

        def step(fn=fn, xg=xg):
            y = fn(*xg)
            torch.autograd.grad(y, xg, dy)

        res, err = try_run(lambda step=step: time_ms(step, cuda=cuda), 120)
        pk = peak_mib(step, cuda=cuda) if res is not None else None
        row(rep, "selective_scan", "fwd+bwd", name, res, fbb, bw, pk, note="" if res is not None else err)
    rep.say()


# diag_scan(triton_config=...) and selective_scan(algorithm=..., triton_config=...) settings; {} = the defaults
DIAG_SWEEP = [
    dict(),
    dict(block_t=32),
    dict(block_t=64, block_d=32, warps_fwd=2, warps_bwd=2),
    dict(block_t=32, block_d=64, warps_fwd=2, warps_bwd=2),
    dict(block_t=64, segment=8),
    dict(block_t=64, segment=2),
    dict(block_t=64, block_d=128, warps_fwd=8, warps_bwd=8),
    dict(stages_fwd=2, stages_bwd=2),
    dict(stages_fwd=4, stages_bwd=3),
]
SEL_SWEEP = [
    dict(),
    dict(algorithm="tiles"),
    dict(algorithm="tiles", stages_fwd=3, stages_bwd=3),
    dict(algorithm="steps"),
    dict(algorithm="steps", prefetch_steps=False),
    dict(algorithm="steps", programs_per_sm=32),
    dict(algorithm="steps", programs_per_sm=64),
    dict(algorithm="steps", block_d_steps=16, programs_per_sm=32),
    dict(algorithm="steps", block_d_steps=16, programs_per_sm=64),
    dict(algorithm="steps", warps_steps=2, programs_per_sm=16),
    dict(algorithm="steps", warps_steps=2, programs_per_sm=32),
    dict(algorithm="steps", warps_steps=4, programs_per_sm=8),
    dict(algorithm="steps", warps_steps=4, programs_per_sm=16),
    dict(algorithm="steps", checkpoint_steps=16),
    dict(algorithm="steps", unroll_steps=2),
    dict(algorithm="steps", unroll_steps=4),
    dict(algorithm="steps", block_d_steps=16, unroll_steps=2),
    dict(algorithm="steps", block_d_steps=8),
    dict(algorithm="steps", block_d_steps=8, programs_per_sm=20),
    dict(algorithm="steps", block_d_steps=8, programs_per_sm=32),
    dict(algorithm="steps", block_d_steps=4),
]


def section_sweep(rep: Report, args, bw, dev):
    """Our kernels over a few tile configurations: the defaults come first."""
    B, T, D, N = args.B, args.T, args.D, args.N
    cuda = dev == "cuda"
    rep.say("## Tile sweep of our kernels (same shapes; first row = defaults)")
    rep.say()
    rep.table("op", "config", "fwd ms", "fwd % BW", "fwd+bwd ms", "fwd+bwd % BW")

    def cells(f, e1, fbw, e2, fb, fbb):
        out = [f"{f:.3f} | {100 * fb / (f * 1e-3) / bw:.3g}%" if f else f"{e1} |"]
        return out + [f"{fbw:.3f} | {100 * fbb / (fbw * 1e-3) / bw:.3g}%" if fbw else f"{e2} |"]

    a, b, dh = diag_inputs(B, T, D, dev)
    fb, fbb = diag_bytes(B, T, D, 2)
    for kw in DIAG_SWEEP:
        x, xg = leaves([a, b], False), leaves([a, b], True)
        run = lambda a, b, kw=kw: diag_scan(a, b, backend="triton", triton_config=kw or None)[0]  # noqa: E731

        def step(run=run, xg=xg, dh=dh):
            torch.autograd.grad(run(*xg), xg, dh)

        f, e1 = try_run(lambda run=run, x=x: time_ms(lambda: run(*x), cuda=cuda), 120)
        fbw, e2 = try_run(lambda step=step: time_ms(step, cuda=cuda), 120)
        rep.row("diag_scan", kw, *cells(f, e1, fbw, e2, fb, fbb))
    del a, b, dh
    xs, dy = selective_inputs(B, T, D, N, dev)
    fb, fbb = selective_bytes(B, T, D, N, 2, "ours")
    for kw in SEL_SWEEP:
        x, xg = leaves(xs, False), leaves(xs, True)
        config = {k: v for k, v in kw.items() if k != "algorithm"} or None

        def run(u, delta, A, Bm, Cm, Dv, z, kw=kw, config=config):
            return selective_scan(u, delta, A, Bm, Cm, D=Dv, z=z, backend="triton",
                                  algorithm=kw.get("algorithm", "auto"), triton_config=config)[0]  # fmt: skip

        def step(run=run, xg=xg):
            torch.autograd.grad(run(*xg), xg, dy)

        f, e1 = try_run(lambda run=run, x=x: time_ms(lambda: run(*x), cuda=cuda), 120)
        fbw, e2 = try_run(lambda step=step: time_ms(step, cuda=cuda), 120)
        rep.row("selective_scan", kw, *cells(f, e1, fbw, e2, fb, fbb))
    rep.say()


def build_parser():
    ap = parser(__doc__)
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--T", type=int, default=4096)
    ap.add_argument("--D", type=int, default=2048, help="channels of diag_scan, Dm of selective_scan")
    ap.add_argument("--N", type=int, default=16, help="state size of selective_scan")
    ap.add_argument("--copy-mib", type=int, default=1024, help="size of the tensor copied to measure bandwidth")
    ap.add_argument("--no-torch", action="store_true", help="skip our chunked torch path")
    ap.add_argument("--no-fla", action="store_true")
    ap.add_argument("--sweep", action="store_true", help="also time our kernels over a few tile configurations")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU, to check the script")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    dev = smoke_or_cuda(args, "scans", B=2, T=40, D=16, N=4, copy_mib=16)
    if dev is None:
        return 2
    fla, fla_version = (None, "disabled") if args.no_fla else fla_ops()
    rep = Report("scans", "# statetrack signed diagonal scan and selective scan: Triton kernels vs the torch path",
                 args.out, print_only=args.print_only, device=dev, argv=argv)  # fmt: skip
    mode = smoke_note(dev)
    bw = copy_bandwidth(args.copy_mib, dev)
    rep.header(f"{mode}copy bandwidth (bf16 .copy_ of {args.copy_mib} MiB, read + write): {bw / 1e9:.0f} GB/s",
               fla=fla_version)  # fmt: skip
    with value_checks(False):
        with rep.section("speed"):
            section_speed(rep, args, fla, bw, dev)
        if args.sweep and (dev == "cuda" or interpreter()):
            with rep.section("sweep"):
                section_sweep(rep, args, bw, dev)
    return rep.done()


if __name__ == "__main__":
    raise SystemExit(main())
