"""sLSTM recurrence on a GPU: the fused Triton kernels vs the plain PyTorch loop, forward+backward (not a test).

    python -m benchmarks.slstm [--out FILE.md]

Shapes of the paper's Table 3 runs (batch 1024, 40 steps): parity (width 128, 4 heads of 32) and modular arithmetic
(width 64, 1 head of 64), one layer's recurrence; fp32 as the layer runs it; CUDA events via triton.testing.do_bench.
"""

from __future__ import annotations

import torch

from statetrack.ops import slstm_scan

from .harness import Report, has_cuda, parser, time_ms

SHAPES = [(1024, 40, 4, 32), (1024, 40, 1, 64), (256, 512, 4, 32)]


def main(argv=None) -> int:
    a = parser(__doc__).parse_args(argv)
    if not has_cuda("benchmarks.slstm"):
        return 2
    rep = Report("slstm", "# sLSTM recurrence: fused Triton kernels vs the PyTorch loop (fwd+bwd ms, fp32)", a.out,
                 print_only=a.print_only, argv=argv)  # fmt: skip
    rep.header()
    rep.table("B, T, H, K", "loop fwd+bwd", "triton fwd+bwd", "speed-up", "max rel. diff of h", right=4)
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
            ms[backend] = time_ms(fb, warmup=5, rep=50)
        diff = ((outs["triton"] - outs["naive"]).norm() / outs["naive"].norm()).item()
        rep.row(f"{B}, {T}, {H}, {K}", f"{ms['naive']:.3f}", f"{ms['triton']:.3f}",
                f"{ms['naive'] / ms['triton']:.1f}x", f"{diff:.1e}")  # fmt: skip
    return rep.done()


if __name__ == "__main__":
    raise SystemExit(main())
