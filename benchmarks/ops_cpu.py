"""Naive loops vs the chunked PyTorch paths, forward + backward, on the CPU, side by side in one run.

    python -m benchmarks.ops_cpu [--repeats 5] [--threads N] [--out results/benchmarks/cpu/ops_cpu.txt]
    python -m benchmarks.ops_cpu --tiny      # tiny shapes, to check the script (printed only, unless --out)

Cases (issue "core recurrences"): delta_rule at B=8, T=2048, H=4, D=64 and diag_scan at B=8, T=2048, D=1024,
fp32. Both paths get the same inputs and the same dense upstream gradient (a random dL/dout, not the stride-0
gradient of a sum), run alternately so that a change of machine load hits both, and are timed in wall-clock and
process CPU seconds (CPU time is the steadier number on a shared machine). Target: fast path >= 20x the loop.

Each case also gets this machine's floor, measured in the same run, and the best ratio any implementation of
that algorithm could reach against the loop (naive / floor):
  delta_rule: the multiply-adds of one chunked forward + backward (counted with torch's FlopCounterMode over the
      "torch" backend: bmm, baddbmm and the triangular solve) divided by the fastest measured torch.bmm rate at
      the chunk's shapes ([B*H, C, K] x [B*H, K, V], the sequential state loop, and [NC*B*H, ...], the batched
      intra-chunk work; fastest of 9 calls). Elementwise work, copies and the Python loops are left out: a lower
      bound for this algorithm at this chunk size.
  diag_scan: the compulsory memory traffic of forward + backward (see ``diag_scan_floor``) divided by the
      fastest measured streaming rate (a 256 MB copy_ and a torch.add(out=) of that size, bytes read + written,
      fastest of 9 calls; --floor-mb sets the size). Also a lower bound.
"""

from __future__ import annotations

import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from statetrack.ops import delta_rule, diag_scan
from statetrack.ops.delta_rule import default_chunk_size

from .harness import Report, load_average, parser


def compare(name: str, inputs: dict, run, backends=("naive", "torch"), repeats: int = 5) -> dict:
    """Median fwd+bwd wall and CPU seconds of ``run(backend, **inputs) -> output`` for each backend."""
    torch.manual_seed(0)
    upstream = None

    def once(backend: str) -> tuple[float, float]:
        nonlocal upstream
        for x in inputs.values():
            x.grad = None
        w0, c0 = time.perf_counter(), time.process_time()
        out = run(backend, **inputs)
        if upstream is None:
            upstream = torch.randn_like(out)
        out.backward(upstream)
        return time.perf_counter() - w0, time.process_time() - c0

    for b in backends:  # warm-up
        once(b)
    runs = {b: [] for b in backends}
    for _ in range(repeats):
        for b in backends:
            runs[b].append(once(b))
    med = {b: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r)) for b, r in runs.items()}
    ref, fast = backends
    return {
        "case": name,
        "wall": med,
        "ratio": med[ref][0] / med[fast][0],
        "ratio_cpu": med[ref][1] / med[fast][1],
    }


def _fastest_seconds(fn, repeats: int = 9) -> float:
    """Fastest of ``repeats`` timed calls: a floor takes the machine at its best."""
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def _solve_flops(a_shape, b_shape, *args, out_shape=None, left=True, unitriangular=False, **kwargs) -> int:
    """linalg_solve_triangular (FlopCounterMode counts no solves): n(n-1)/2 (unit) or n(n+1)/2 MACs per column."""
    n = a_shape[-1]
    cols = b_shape[-1] if left else b_shape[-2]
    return math.prod(out_shape[:-2]) * cols * (n * (n - 1) if unitriangular else n * (n + 1))


def _baddbmm_flops(self_shape, b1_shape, b2_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * math.prod(b1_shape) * b2_shape[-1]  # the in-place form is not in FlopCounterMode's table


def delta_rule_floor(inputs: dict) -> dict:
    """Matmul work of one chunked fwd+bwd (MACs) and the fastest bmm rate at the chunk's shapes (MAC/s)."""
    chunk_size = default_chunk_size(inputs["q"].device)  # what the timed call (no chunk_size) uses
    mapping = {torch.ops.aten.linalg_solve_triangular: _solve_flops, torch.ops.aten.baddbmm_: _baddbmm_flops}
    q, v = inputs["q"], inputs["v"]
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        out = delta_rule(**inputs, backend="torch", chunk_size=chunk_size)[0]
        out.backward(torch.randn_like(out))
    for x in inputs.values():
        x.grad = None
    macs = counter.get_total_flops() / 2
    B, T, H, K = q.shape
    C, V, NC = min(chunk_size, T), v.shape[-1], -(-T // chunk_size)
    rates = {}
    for n in (B * H, NC * B * H):
        x, y, out = torch.randn(n, C, K), torch.randn(n, K, V), torch.empty(n, C, V)
        seconds = _fastest_seconds(lambda x=x, y=y, out=out: torch.bmm(x, y, out=out))
        rates[f"bmm [{n},{C},{K}]x[{n},{K},{V}]"] = n * C * K * V / seconds
    best = max(rates, key=rates.get)
    return {"work": macs, "rate": rates[best], "floor": macs / rates[best], "rates": rates}


def diag_scan_floor(inputs: dict, mb: int = 256) -> dict:
    """Compulsory bytes of one fwd+bwd and the fastest measured streaming rate (bytes read + written per second).

    Forward reads a and b and writes h; backward reads the upstream dL/dh, a and h (h_{t-1} gives dL/da) and
    writes dL/da and dL/db: 8 passes over a [B, T, D] tensor. Everything else (the final state, the carries)
    is one time step, and intermediates that fit in cache are free here."""
    a = inputs["a"]
    work = 8 * a.numel() * a.element_size()
    n = (mb << 20) // 4  # 256 MB of fp32 by default, far beyond the caches
    x, y, z = torch.rand(n), torch.rand(n), torch.empty(n)
    z.copy_(x)  # touch every page of the destination first
    rates = {
        f"copy_ {mb} MB": 2 * 4 * n / _fastest_seconds(lambda: z.copy_(x)),
        f"add(out=) {mb} MB": 3 * 4 * n / _fastest_seconds(lambda: torch.add(x, y, out=z)),
    }
    best = max(rates, key=rates.get)
    return {"work": work, "rate": rates[best], "floor": work / rates[best], "rates": rates}


def delta_rule_case(B=8, T=2048, H=4, D=64):
    g = torch.Generator().manual_seed(0)
    x = {
        "q": torch.randn(B, T, H, D, generator=g),
        "k": F.normalize(torch.randn(B, T, H, D, generator=g), dim=-1),
        "v": torch.randn(B, T, H, D, generator=g),
        "beta": 2 * torch.rand(B, T, H, generator=g),
    }
    inputs = {n: t.requires_grad_() for n, t in x.items()}
    return f"delta_rule B={B} T={T} H={H} D={D} beta~U[0,2]", inputs, lambda be, **kw: delta_rule(**kw, backend=be)[0]


def diag_scan_case(B=8, T=2048, D=1024):
    g = torch.Generator().manual_seed(0)
    inputs = {
        "a": (2 * torch.rand(B, T, D, generator=g) - 1).requires_grad_(),
        "b": torch.randn(B, T, D, generator=g).requires_grad_(),
    }
    return f"diag_scan B={B} T={T} D={D} a~U[-1,1]", inputs, lambda be, **kw: diag_scan(**kw, backend=be)[0]


def build_parser():
    ap = parser(__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads before timing")
    ap.add_argument("--floor-mb", type=int, default=256, help="size of the streaming-rate measurement")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes, 1 repeat: checks the script, times nothing")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = ({"B": 1, "T": 64, "H": 1, "D": 16}, {"B": 1, "T": 64, "D": 32}) if args.tiny else ({}, {})
    if args.tiny:
        args.repeats, args.floor_mb = 1, 4
        args.print_only = args.print_only or args.out is None
    rep = Report("ops_cpu", "Naive loops vs the chunked PyTorch paths, forward + backward, CPU", args.out,
                 print_only=args.print_only, device="cpu", suffix=".txt", argv=argv)  # fmt: skip
    rep.header(f"load average before: {load_average()}")
    rep.say("fp32, forward + backward, median of alternating runs; wall ms (process CPU ms)")
    rep.say()
    rep.say(f"{'case':<42} {'naive':>18} {'torch (chunked)':>18} {'ratio wall':>11} {'ratio cpu':>10} "
            f"{'floor ms':>9} {'best possible ratio':>20}")  # fmt: skip
    notes = []
    for (make, floor_of, unit), size in zip((
        (delta_rule_case, delta_rule_floor, ("GMAC of matmul work", "GMAC/s")),
        (diag_scan_case, lambda x: diag_scan_floor(x, args.floor_mb), ("GB of compulsory memory traffic", "GB/s")),
    ), sizes, strict=True):  # fmt: skip
        name, inputs, run = make(**size)
        with rep.section(name):
            r = compare(name, inputs, run, repeats=args.repeats)
            f = floor_of(inputs)
            (nw, nc), (tw, tc) = r["wall"]["naive"], r["wall"]["torch"]
            rep.say(
                f"{r['case']:<42} {f'{1e3 * nw:.0f} ({1e3 * nc:.0f})':>18} {f'{1e3 * tw:.0f} ({1e3 * tc:.0f})':>18} "
                f"{r['ratio']:10.1f}x {r['ratio_cpu']:9.1f}x {1e3 * f['floor']:9.1f} {nw / f['floor']:19.1f}x"
            )
            rates = ", ".join(f"{k} {v / 1e9:.1f}" for k, v in f["rates"].items())
            notes.append(
                f"  {name.split()[0]}: {f['work'] / 1e9:.2f} {unit[0]} / {f['rate'] / 1e9:.1f} {unit[1]} "
                f"(best of: {rates} {unit[1]}) = {1e3 * f['floor']:.1f} ms; chunked = {tw / f['floor']:.1f}x its floor"
            )
    rep.say("floors (measured in this run; best possible ratio = naive wall / floor):")
    for n in notes:
        rep.say(n)
    rep.say(f"load average after: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
