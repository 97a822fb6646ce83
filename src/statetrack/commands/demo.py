"""`statetrack demo`: for now, a small check of the ops (the parity training demo replaces it)."""

from __future__ import annotations

import time

import torch


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the demo")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    from statetrack.ops import delta_rule

    torch.manual_seed(args.seed)
    B, T, H, D = 2, 1000, 4, 32
    q = torch.randn(B, T, H, D, dtype=torch.float64)
    k = torch.nn.functional.normalize(torch.randn(B, T, H, D, dtype=torch.float64), dim=-1)
    v = torch.randn(B, T, H, D, dtype=torch.float64)
    print(f"delta rule, B={B} T={T} H={H} D={D}, fp64, chunked vs sequential reference")
    print(f"{'beta range':>12} {'rel. error of o':>16} {'naive s':>8} {'chunked s':>9}")
    for lo, hi in ((0.0, 1.0), (0.0, 2.0), (1.9, 2.0)):
        beta = lo + (hi - lo) * torch.rand(B, T, H, dtype=torch.float64)
        t0 = time.perf_counter()
        ref, _ = delta_rule(q, k, v, beta, backend="naive")
        t1 = time.perf_counter()
        out, _ = delta_rule(q, k, v, beta, backend="torch")
        t2 = time.perf_counter()
        err = ((out - ref).norm() / ref.norm()).item()
        print(f"{f'[{lo}, {hi}]':>12} {err:16.2e} {t1 - t0:8.3f} {t2 - t1:9.3f}")
    return 0
