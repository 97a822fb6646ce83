"""Naive loops vs the chunked PyTorch paths, forward + backward, on the CPU, side by side in one run.

    python benchmarks/ops_cpu.py [--repeats 5] [--threads N] [--out benchmarks/results/ops_cpu.txt]

Cases (issue "core recurrences"): delta_rule at B=8, T=2048, H=4, D=64 and diag_scan at B=8, T=2048, D=1024,
fp32. Both paths get the same inputs and the same dense upstream gradient (a random dL/dout, not the stride-0
gradient of a sum), run alternately so that a change of machine load hits both, and are timed in wall-clock and
process CPU seconds (CPU time is the steadier number on a shared machine). Target: fast path >= 20x the loop.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from statetrack.ops import delta_rule, diag_scan


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads before timing")
    ap.add_argument("--out", default=None, help="also write the report to this file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    lines = [
        f"command: python {' '.join(sys.argv)}",
        f"device: CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch threads {torch.get_num_threads()}",
        f"versions: python {platform.python_version()}, torch {torch.__version__}",
        f"load average before: {_load()}",
        "fp32, forward + backward, median of alternating runs; wall ms (process CPU ms)",
        "",
        f"{'case':<42} {'naive':>18} {'torch (chunked)':>18} {'ratio wall':>11} {'ratio cpu':>10}",
    ]
    print("\n".join(lines))
    for make in (delta_rule_case, diag_scan_case):
        r = compare(*make(), repeats=args.repeats)
        (nw, nc), (tw, tc) = r["wall"]["naive"], r["wall"]["torch"]
        row = (
            f"{r['case']:<42} {f'{1e3 * nw:.0f} ({1e3 * nc:.0f})':>18} {f'{1e3 * tw:.0f} ({1e3 * tc:.0f})':>18} "
            f"{r['ratio']:10.1f}x {r['ratio_cpu']:9.1f}x"
        )
        print(row)
        lines.append(row)
    lines.append(f"load average after: {_load()}")
    print(lines[-1])
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
