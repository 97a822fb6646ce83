"""Naive loop vs chunked PyTorch path, forward + backward, on the CPU (issue: core recurrences).

    python benchmarks/ops_cpu.py [--repeats 3] [--out benchmarks/results/ops_cpu.txt]

Prints the device, versions and command, then one row per op with both times and the ratio (target: >= 20x).
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

from statetrack.ops import delta_rule


def time_fwd_bwd(fn, make_inputs, repeats: int) -> float:
    """Median seconds of fn(**inputs) followed by backward of the sum of its first output."""
    times = []
    for _ in range(repeats):
        inputs = make_inputs()
        t0 = time.perf_counter()
        out = fn(**inputs)
        out[0].float().sum().backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def delta_rule_case(B=8, T=2048, H=4, D=64):
    def make():
        g = torch.Generator().manual_seed(0)
        return {
            "q": torch.randn(B, T, H, D, generator=g).requires_grad_(),
            "k": F.normalize(torch.randn(B, T, H, D, generator=g), dim=-1).requires_grad_(),
            "v": torch.randn(B, T, H, D, generator=g).requires_grad_(),
            "beta": (2 * torch.rand(B, T, H, generator=g)).requires_grad_(),
        }

    return f"delta_rule B={B} T={T} H={H} D={D} fp32", make


def environment() -> str:
    return (
        f"command: python {' '.join(sys.argv)}\n"
        f"device: CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch threads {torch.get_num_threads()}\n"
        f"versions: python {platform.python_version()}, torch {torch.__version__}\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="also write the report to this file")
    args = ap.parse_args()

    rows = []
    name, make = delta_rule_case()
    naive = time_fwd_bwd(lambda **x: delta_rule(**x, backend="naive"), make, args.repeats)
    fast = time_fwd_bwd(lambda **x: delta_rule(**x, backend="torch"), make, args.repeats)
    rows.append((name, "naive", "torch (chunked, C=64)", naive, fast))

    try:
        from ops_cpu_diag import diag_scan_rows
    except ImportError:
        diag_scan_rows = None
    if diag_scan_rows is not None:
        rows.extend(diag_scan_rows(args.repeats, time_fwd_bwd))

    lines = [environment(), f"{'case':<44} {'reference':<10} {'fast path':<24} {'ref s':>8} {'fast s':>8} {'ratio':>7}"]
    for case, ref_name, fast_name, ref_t, fast_t in rows:
        lines.append(f"{case:<44} {ref_name:<10} {fast_name:<24} {ref_t:8.3f} {fast_t:8.3f} {ref_t / fast_t:6.1f}x")
    report = "\n".join(lines)
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report + "\n")


if __name__ == "__main__":
    main()
