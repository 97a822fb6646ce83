"""Signed diagonal scan and Mamba-1 selective scan on a GPU: ours (Triton) vs our chunked torch path (and fla).

    python benchmarks/scans.py [--B 8 --T 4096 --D 2048 --N 16] [--no-torch] [--no-fla] [--sweep]
                               [--out benchmarks/results/scans_h100.md]
    TRITON_INTERPRET=1 python benchmarks/scans.py --smoke      # CPU: tiny shapes (ours only under the interpreter)

Speed: forward and forward+backward ms (triton.testing.do_bench, median, after warm-up; value checks off), bf16
inputs (A, D fp32 as in Mamba), on the same inputs for every path. GB/s = the op's compulsory bytes (every input
read once, every output written once; states and scratch excluded) over the time; % BW = that over the copy
bandwidth measured in the same run (a large bf16 tensor's .copy_: bytes read + written per second). Peak MiB: the
largest allocation of one forward+backward beyond its inputs. The torch path is our chunked PyTorch scan
(``backend="torch"``), the CPU path. fla, where importable, is a reference point with positive decays only:
``chunk_hgrn`` / ``fused_recurrent_hgrn`` (h = exp(g) h + x: the diag scan's bytes) and ``chunk_simple_gla`` (Mamba-2
style, one scalar decay per head of 64 channels, state of the same size as the selective scan's: a different op).
``--sweep`` times our kernels over a few tile configurations (to choose defaults). ``--smoke`` runs everything at
tiny shapes on the CPU to check the script itself; its times mean nothing.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import report
from report import run_sections, save_to, say  # benchmarks/report.py (this script's folder is on sys.path)
from statetrack.ops import diag_scan, selective_scan
from statetrack.ops._checks import value_checks
from statetrack.ops.diag_scan.triton import diag_scan_triton, interpreter_requested, selective_scan_triton

DEV = "cuda"


def bench(fn) -> float:
    """Median ms of fn(). CUDA: triton.testing.do_bench (warm-up, L2 flushed between runs); else wall clock."""
    if DEV == "cuda":
        import triton.testing

        return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
    fn()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def peak_mib(fn) -> float | None:
    if DEV != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def try_run(fn):
    try:
        return fn(), None
    except Exception as e:  # noqa: BLE001 - report, do not die
        if DEV == "cuda":
            torch.cuda.empty_cache()
        first = str(e).splitlines()[0] if str(e) else ""
        return None, f"{type(e).__name__}: {first}"[:120]


def copy_bandwidth(mib: int) -> float:
    """Bytes read + written per second by dst.copy_(src) of a ``mib`` MiB bf16 tensor."""
    n = mib * 2**20 // 2
    src = torch.randn(n, device=DEV, dtype=torch.float32).to(torch.bfloat16)
    dst = torch.empty_like(src)
    ms = bench(lambda: dst.copy_(src))
    return 2 * n * 2 / (ms * 1e-3)


def fla_ops():
    return report.fla_modules("fla.ops.hgrn", "fla.ops.simple_gla")


# ---------------------------------------------------------------------------------------------------------- inputs
def diag_inputs(B, T, D, dtype=torch.bfloat16, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    a = (2 * torch.rand(B, T, D, generator=g) - 1).to(DEV, dtype)
    b = torch.randn(B, T, D, generator=g).to(DEV, dtype)
    dh = torch.randn(B, T, D, generator=g).to(DEV, dtype)
    return a, b, dh


def selective_inputs(B, T, Dm, N, dtype=torch.bfloat16, seed=0):
    """u, delta, A, B, C, D, z (A and D fp32, the rest ``dtype``) and a cotangent dy."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    u, z, dy = r(B, T, Dm), r(B, T, Dm), r(B, T, Dm)
    delta = F.softplus(r(B, T, Dm) - 2)
    A = -torch.exp(0.5 * r(Dm, N))
    Bm, Cm = r(B, T, N), r(B, T, N)
    xs = [u, delta, A, Bm, Cm, r(Dm), z]
    xs = [x.to(DEV, torch.float32 if i in (2, 5) else dtype) for i, x in enumerate(xs)]
    return xs, dy.to(DEV, dtype)


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
def row(op, pas, path, ms, nbytes, bw, peak=None, note=""):
    if ms is None:
        say(f"| {op} | {pas} | {path} | {note} | | | | |")
        return
    gbs = nbytes / (ms * 1e-3) / 1e9
    pk = "" if peak is None else f"{peak:.0f}"
    say(f"| {op} | {pas} | {path} | {ms:.3f} | {gbs:.4g} | {100 * gbs * 1e9 / bw:.3g}% | {pk} | {note} |")


def section_speed(args, fla, bw):
    B, T, D, N = args.B, args.T, args.D, args.N
    dt = torch.bfloat16
    item = 2
    say(f"## Speed: B={B}, T={T}, D={D} (selective: Dm={D}, N={N}), bf16")
    say()
    say("| op | pass | path | ms | GB/s | % copy BW | peak MiB (fwd+bwd) | note |")
    say("|---|---|---|---|---|---|---|---|")
    torch_ok = not args.no_torch
    ours_ok = DEV == "cuda" or interpreter_requested()

    a, b, dh = diag_inputs(B, T, D, dt)
    for name, fn in diag_paths(fla, torch_ok).items():
        if name == "ours" and not ours_ok:
            row("diag_scan", "fwd", name, None, 0, bw, note="needs CUDA or TRITON_INTERPRET=1")
            continue
        fb, fbb = diag_bytes(B, T, D, item)
        x = leaves([a, b], False)
        res, err = try_run(lambda fn=fn, x=x: bench(lambda: fn(*x)))
        note = ""
        if name == "torch" and res is not None and ours_ok:
            h_t, h_o = fn(*x).float(), diag_scan(*x, backend="triton")[0].float()
            note = f"ours vs torch: rel {float((h_t - h_o).norm() / h_t.norm()):.1e}"
        row("diag_scan", "fwd", name, res, fb, bw, note=note if res is not None else err)
        xg = leaves([a, b], True)

        def step(fn=fn, xg=xg, dh=dh):
            h = fn(*xg)
            torch.autograd.grad(h, xg, dh)

        res, err = try_run(lambda step=step: bench(step))
        pk = peak_mib(step) if res is not None else None
        row("diag_scan", "fwd+bwd", name, res, fbb, bw, pk, note="" if res is not None else err)
    del a, b, dh

    xs, dy = selective_inputs(B, T, D, N, dt)
    for name, fn in selective_paths(fla, torch_ok).items():
        if name == "ours" and not ours_ok:
            row("selective_scan", "fwd", name, None, 0, bw, note="needs CUDA or TRITON_INTERPRET=1")
            continue
        fb, fbb = selective_bytes(B, T, D, N, item, name)
        x = leaves(xs, False)
        res, err = try_run(lambda fn=fn, x=x: bench(lambda: fn(*x)))
        note = ""
        if name == "torch" and res is not None and ours_ok:
            y_t, y_o = fn(*x).float(), selective_paths(None, False)["ours"](*x).float()
            note = f"ours vs torch: rel {float((y_t - y_o).norm() / y_t.norm()):.1e}"
        row("selective_scan", "fwd", name, res, fb, bw, note=note if res is not None else err)
        xg = leaves(xs, True)

        def step(fn=fn, xg=xg):
            y = fn(*xg)
            torch.autograd.grad(y, xg, dy)

        res, err = try_run(lambda step=step: bench(step))
        pk = peak_mib(step) if res is not None else None
        row("selective_scan", "fwd+bwd", name, res, fbb, bw, pk, note="" if res is not None else err)
    say()


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
    dict(path="tiles"),
    dict(path="tiles", stages_fwd=3, stages_bwd=3),
    dict(path="steps"),
    dict(path="steps", prefetch_steps=False),
    dict(path="steps", programs_per_sm=32),
    dict(path="steps", programs_per_sm=64),
    dict(path="steps", block_d_steps=16, programs_per_sm=32),
    dict(path="steps", block_d_steps=16, programs_per_sm=64),
    dict(path="steps", warps_steps=2, programs_per_sm=16),
    dict(path="steps", warps_steps=2, programs_per_sm=32),
    dict(path="steps", warps_steps=4, programs_per_sm=8),
    dict(path="steps", warps_steps=4, programs_per_sm=16),
    dict(path="steps", checkpoint_steps=16),
    dict(path="steps", unroll_steps=2),
    dict(path="steps", unroll_steps=4),
    dict(path="steps", block_d_steps=16, unroll_steps=2),
    dict(path="steps", block_d_steps=8),
    dict(path="steps", block_d_steps=8, programs_per_sm=20),
    dict(path="steps", block_d_steps=8, programs_per_sm=32),
    dict(path="steps", block_d_steps=4),
]


def section_sweep(args, bw):
    """Our kernels over a few tile configurations: the defaults come first."""
    B, T, D, N = args.B, args.T, args.D, args.N
    say("## Tile sweep of our kernels (same shapes; first row = defaults)")
    say()
    say("| op | config | fwd ms | fwd % BW | fwd+bwd ms | fwd+bwd % BW |")
    say("|---|---|---|---|---|---|")
    a, b, dh = diag_inputs(B, T, D)
    fb, fbb = diag_bytes(B, T, D, 2)
    for kw in DIAG_SWEEP:
        x, xg = leaves([a, b], False), leaves([a, b], True)

        def step(kw=kw, xg=xg, dh=dh):
            torch.autograd.grad(diag_scan_triton(*xg, **kw)[0], xg, dh)

        f, e1 = try_run(lambda kw=kw, x=x: bench(lambda: diag_scan_triton(*x, **kw)))
        fbw, e2 = try_run(lambda step=step: bench(step))
        cells = [f"{f:.3f} | {100 * fb / (f * 1e-3) / bw:.3g}%" if f else f"{e1} |"]
        cells += [f"{fbw:.3f} | {100 * fbb / (fbw * 1e-3) / bw:.3g}%" if fbw else f"{e2} |"]
        say(f"| diag_scan | {kw} | " + " | ".join(cells) + " |")
    del a, b, dh
    xs, dy = selective_inputs(B, T, D, N)
    fb, fbb = selective_bytes(B, T, D, N, 2, "ours")
    for kw in SEL_SWEEP:
        x, xg = leaves(xs, False), leaves(xs, True)

        def step(kw=kw, xg=xg):
            u, delta, A, Bm, Cm, Dv, z = xg
            y = selective_scan_triton(u, delta, A, Bm, Cm, Dv, z, -1.0, None, **kw)[0]
            torch.autograd.grad(y, xg, dy)

        def fwd(kw=kw, x=x):
            u, delta, A, Bm, Cm, Dv, z = x
            return selective_scan_triton(u, delta, A, Bm, Cm, Dv, z, -1.0, None, **kw)

        f, e1 = try_run(lambda fwd=fwd: bench(fwd))
        fbw, e2 = try_run(lambda step=step: bench(step))
        cells = [f"{f:.3f} | {100 * fb / (f * 1e-3) / bw:.3g}%" if f else f"{e1} |"]
        cells += [f"{fbw:.3f} | {100 * fbb / (fbw * 1e-3) / bw:.3g}%" if fbw else f"{e2} |"]
        say(f"| selective_scan | {kw} | " + " | ".join(cells) + " |")
    say()


def main() -> None:
    global DEV
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--T", type=int, default=4096)
    ap.add_argument("--D", type=int, default=2048, help="channels of diag_scan, Dm of selective_scan")
    ap.add_argument("--N", type=int, default=16, help="state size of selective_scan")
    ap.add_argument("--copy-mib", type=int, default=1024, help="size of the tensor copied to measure bandwidth")
    ap.add_argument("--no-torch", action="store_true", help="skip our chunked torch path")
    ap.add_argument("--no-fla", action="store_true")
    ap.add_argument("--sweep", action="store_true", help="also time our kernels over a few tile configurations")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU, to check the script")
    ap.add_argument("--out", default=None, help="also write the Markdown report here")
    args = ap.parse_args()
    save_to(args.out)  # the report file grows line by line: a run cut short keeps what it measured
    if args.smoke:
        DEV = "cpu"
        args.B, args.T, args.D, args.N, args.copy_mib = 2, 40, 16, 4, 16
        args.no_fla = True
    elif not torch.cuda.is_available():
        sys.exit("benchmarks/scans.py needs a CUDA GPU (or --smoke on a CPU)")
    import triton

    fla, fla_version = (None, "disabled") if args.no_fla else fla_ops()
    say("# statetrack signed diagonal scan and selective scan: Triton kernels vs the torch path")
    say()
    say(f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
    if DEV == "cuda":
        props = torch.cuda.get_device_properties(0)
        say(f"- device: {torch.cuda.get_device_name()} ({props.multi_processor_count} SMs)")
    else:
        mode = "Triton interpreter" if interpreter_requested() else "torch only"
        say(f"- device: CPU smoke run ({mode}); times mean nothing")
    say(
        f"- torch {torch.__version__}, triton {triton.__version__}, fla {fla_version}, "
        f"python {platform.python_version()}"
    )
    say(f"- command: `python {' '.join(sys.argv)}`")
    t0 = time.time()
    bw = copy_bandwidth(args.copy_mib)
    say(f"- copy bandwidth (bf16 .copy_ of {args.copy_mib} MiB, read + write): {bw / 1e9:.0f} GB/s")
    say()
    sections = [("speed", lambda: section_speed(args, fla, bw))]
    if args.sweep and (DEV == "cuda" or interpreter_requested()):
        sections.append(("sweep", lambda: section_sweep(args, bw)))
    with value_checks(False):
        run_sections(sections)
    say(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
