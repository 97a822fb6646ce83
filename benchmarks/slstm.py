"""sLSTM recurrence on a GPU: the fused Triton kernels vs the plain PyTorch loop, forward+backward (not a test).

    python benchmarks/slstm.py [--out benchmarks/results/slstm_h100.md]

Shapes of the paper's Table 3 runs (batch 1024, 40 steps): parity (width 128, 4 heads of 32) and modular arithmetic
(width 64, 1 head of 64), one layer's recurrence; fp32 as the layer runs it; CUDA events via triton.testing.do_bench.
"""

from __future__ import annotations

import argparse
import sys

import torch

from report import say, start_gpu_report  # benchmarks/report.py (this script's folder is on sys.path)
from statetrack.ops import slstm_scan

SHAPES = [(1024, 40, 4, 32), (1024, 40, 1, 64), (256, 512, 4, 32)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    if not start_gpu_report(a.out):
        return 2
    from triton.testing import do_bench

    say("# sLSTM recurrence: fused Triton kernels vs the PyTorch loop (fwd+bwd ms, fp32)\n")
    say(f"- device: {torch.cuda.get_device_name()}; torch {torch.__version__}")
    say(f"- command: `python {' '.join(sys.argv)}`\n")
    say("| B, T, H, K | loop fwd+bwd | triton fwd+bwd | speed-up | max rel. diff of h |")
    say("|---|---:|---:|---:|---:|")
    for B, T, H, K in SHAPES:
        g = torch.Generator(device="cuda").manual_seed(0)
        wx = torch.randn(B, T, 4, H, K, device="cuda", generator=g).requires_grad_()
        r = (torch.randn(H, K, 4, K, device="cuda", generator=g) / K**0.5).requires_grad_()
        dh = torch.randn(B, T, H, K, device="cuda", generator=g)
        ms, outs = {}, {}
        for backend in ("naive", "triton"):

            def fb(backend=backend, wx=wx, r=r, dh=dh):
                h, _ = slstm_scan(wx, r, backend=backend)
                h.backward(dh)
                return h

            outs[backend] = fb().detach()
            ms[backend] = do_bench(fb, warmup=5, rep=50)
        diff = ((outs["triton"] - outs["naive"]).norm() / outs["naive"].norm()).item()
        say(f"| {B}, {T}, {H}, {K} | {ms['naive']:.3f} | {ms['triton']:.3f} | {ms['naive'] / ms['triton']:.1f}x "
            f"| {diff:.1e} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
