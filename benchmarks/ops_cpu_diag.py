"""diag_scan on the CPU: the naive loop vs the chunked "torch" path, forward + backward, side by side.

    python benchmarks/ops_cpu_diag.py [--repeats 5] [--B 8 --T 2048 --D 1024]

``bench_diag_scan()`` is what benchmarks/ops_cpu.py calls. Both paths get the same inputs and the same dense
upstream gradient (a random dL/dh, not the stride-0 gradient of a sum, which would make reading it free), run
alternately so that a change of machine load hits both, and are timed in wall-clock and process CPU seconds
(the CPU time is the steadier number on a shared machine). Printed with the device, versions, threads and load.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

from statetrack.ops import diag_scan
from statetrack.ops.diag_scan.scan import default_chunk_size


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


def bench_diag_scan(
    B: int = 8, T: int = 2048, D: int = 1024, repeats: int = 5, chunk_size: int | None = None, verbose: bool = True
) -> dict:
    """Median fwd+bwd seconds of diag_scan(backend="naive") and (backend="torch") at [B, T, D] fp32.

    Returns a dict with ``naive_s``, ``torch_s`` (wall), ``naive_cpu_s``, ``torch_cpu_s`` (process CPU time),
    ``ratio`` (wall) and ``ratio_cpu``, plus the shape, threads and load average; prints a small table too.
    """
    gen = torch.Generator().manual_seed(0)
    a = (2 * torch.rand(B, T, D, generator=gen) - 1).requires_grad_()
    b = torch.randn(B, T, D, generator=gen).requires_grad_()
    g = torch.randn(B, T, D, generator=gen)

    def once(backend: str) -> tuple[float, float]:
        a.grad = b.grad = None
        w0, c0 = time.perf_counter(), time.process_time()
        h, _ = diag_scan(a, b, backend=backend, chunk_size=chunk_size)
        h.backward(g)
        return time.perf_counter() - w0, time.process_time() - c0

    load_before = _load()
    once("naive"), once("torch")  # warm-up
    runs: dict[str, list[tuple[float, float]]] = {"naive": [], "torch": []}
    for _ in range(repeats):
        for backend in runs:
            runs[backend].append(once(backend))
    med = {k: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r)) for k, r in runs.items()}
    res = {
        "op": f"diag_scan B={B} T={T} D={D} fp32 fwd+bwd",
        "naive_s": med["naive"][0],
        "torch_s": med["torch"][0],
        "naive_cpu_s": med["naive"][1],
        "torch_cpu_s": med["torch"][1],
        "ratio": med["naive"][0] / med["torch"][0],
        "ratio_cpu": med["naive"][1] / med["torch"][1],
        "chunk_size": chunk_size or default_chunk_size(T, B * D, a.device),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "load_avg": f"{load_before} -> {_load()}",
    }
    if verbose:
        print(f"{res['op']}, chunk_size={res['chunk_size']}, median of {repeats}, torch threads {res['threads']}")
        print(f"  load average (1/5/15 min): {res['load_avg']}")
        print(f"  {'':8s}{'wall ms':>10s}{'cpu ms':>10s}")
        print(f"  {'naive':8s}{1e3 * res['naive_s']:10.1f}{1e3 * res['naive_cpu_s']:10.1f}")
        print(f"  {'torch':8s}{1e3 * res['torch_s']:10.1f}{1e3 * res['torch_cpu_s']:10.1f}")
        print(f"  {'ratio':8s}{res['ratio']:9.1f}x{res['ratio_cpu']:9.1f}x   (target >= 20x)")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--T", type=int, default=2048)
    ap.add_argument("--D", type=int, default=1024)
    ap.add_argument("--chunk-size", type=int, default=None, help="default: the library's choice")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads before timing")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"device: CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"python {platform.python_version()}, torch {torch.__version__}"
    )
    bench_diag_scan(args.B, args.T, args.D, args.repeats, args.chunk_size)


if __name__ == "__main__":
    main()
