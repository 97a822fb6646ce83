"""Where the chunked delta rule's time goes on a GPU: each Triton kernel's share of forward+backward, per dot
precision, at the long-sequence shapes where fla's chunk path is faster than ours.

    python benchmarks/delta_rule_profile.py [--shapes 4,2048,16,128;2,8192,16,128] [--precisions tf32x3,tf32]
                                            [--configs "BV_grad=64;warps_grad=4;chunk=32"] [--out FILE.md]

Per shape and precision: forward+backward ms (triton.testing.do_bench median), then the CUDA time of every kernel
over 10 forward+backward calls (torch.profiler), largest first, with its share. The precisions are those of
``delta_rule_triton(precision=...)``: tf32x3 (the default, three tf32 passes per fp32 product), tf32 (one pass),
ieee. ``--configs``: block settings to time instead (``Config`` fields of the chunked kernels, or chunk=16/32),
each as a row of fwd+bwd ms and its largest kernels, at the first precision. bf16 inputs, beta ~ U[0, 2], unit
keys, input range checks off.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernels as kb  # noqa: E402 - the shared inputs, runners and timer of benchmarks/kernels.py
from report import say, start_gpu_report  # noqa: E402
from statetrack.ops import value_checks  # noqa: E402


def kernel_times(fn, x, names, calls: int = 10) -> dict[str, float]:
    """CUDA ms per forward+backward call of each kernel (summed over its launches), by kernel name."""
    from torch.profiler import ProfilerActivity, profile

    leaves = [x[n] for n in names]
    do = torch.randn_like(fn(x)[0])
    for _ in range(3):
        torch.autograd.grad(fn(x)[0], leaves, do)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            torch.autograd.grad(fn(x)[0], leaves, do)
        torch.cuda.synchronize()
    out: dict[str, float] = defaultdict(float)
    for e in prof.key_averages():
        if e.device_type == torch.autograd.DeviceType.CUDA and e.device_time_total > 0:
            out[e.key] += e.device_time_total / 1e3 / calls
    return dict(out)


def _overrides(text: str) -> dict[str, int]:
    """ "BV_grad=64,warps_grad=4" -> {"BV_grad": 64, "warps_grad": 4}"""
    return {k.strip(): int(v) for k, v in (kv.split("=") for kv in text.split(",") if kv.strip())}


def tune(x, names, precision: str, configs: list[str]) -> None:
    """A row per config: fwd+bwd ms (fwd ms) [peak MiB] and the three largest kernels' ms."""
    say()
    say(f"| config (precision {precision}) | fwd+bwd ms (fwd) [MiB] | largest kernels, ms |")
    say("|---|---|---|")
    for text in ["default", *configs]:
        kw = {} if text == "default" else _overrides(text)
        chunk = kw.pop("chunk", None)
        fn = lambda z, kw=kw, c=chunk: kb.ours_chunk(  # noqa: E731
            z, precision=precision, **({"config": kw} if kw else {}), **({"chunk": c} if c else {})
        )
        try:
            fb, fwd, peak = kb.bench_fwd_bwd(fn, x, names)
            top = sorted(kernel_times(fn, x, names).items(), key=lambda kv: -kv[1])[:3]
            say(f"| {text} | {fb:.3f} ({fwd:.3f}) [{peak:.0f}] | {', '.join(f'{k} {ms:.3f}' for k, ms in top)} |")
        except Exception as e:  # noqa: BLE001 - a config that does not compile or run is a row, not the end
            say(f"| {text} | failed: {type(e).__name__}: {str(e)[:100]} | |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="4,2048,16,128;2,8192,16,128", help="B,T,H,D;B,T,H,D;...")
    ap.add_argument("--precisions", default="tf32x3,tf32")
    ap.add_argument("--configs", default="", help="';'-separated block settings to time, e.g. BV_grad=64;chunk=32")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes.split(";") if s]
    if any(len(s) != 4 for s in shapes):
        ap.error(f"--shapes: each shape is B,T,H,D, got {args.shapes!r}")
    if not start_gpu_report(args.out):
        return
    import triton

    t0 = time.time()
    value_checks(False).__enter__()
    say("# Chunked delta rule: time per kernel, forward+backward, bf16")
    say()
    say(f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
    say(f"- device: {torch.cuda.get_device_name()}")
    say(f"- torch {torch.__version__}, triton {triton.__version__}, python {platform.python_version()}")
    say(f"- command: `python {' '.join(sys.argv)}`")
    names = ["q", "k", "v", "beta"]
    for B, T, H, D in shapes:
        x = kb.cast(kb.make_inputs(B, T, H, D), torch.bfloat16, grad=True)
        if args.configs:
            say()
            say(f"## B, T, H, D = {B}, {T}, {H}, {D}: block settings")
            tune(x, names, args.precisions.split(",")[0], [c for c in args.configs.split(";") if c.strip()])
        else:
            for prec in args.precisions.split(","):
                fn = lambda z, p=prec: kb.ours_chunk(z, precision=p)  # noqa: E731
                fb, fwd, peak = kb.bench_fwd_bwd(fn, x, names)
                times = kernel_times(fn, x, names)
                total = sum(times.values())
                say()
                say(f"## B, T, H, D = {B}, {T}, {H}, {D}, precision {prec}: fwd+bwd {fb:.3f} ms (fwd {fwd:.3f}), "
                       f"peak {peak:.0f} MiB; kernels {total:.3f} ms")  # fmt: skip
                say()
                say("| kernel | ms per fwd+bwd | share |")
                say("|---|---:|---:|")
                for k, ms in sorted(times.items(), key=lambda kv: -kv[1])[:12]:
                    say(f"| {k[:70]} | {ms:.3f} | {ms / total:.0%} |")
        del x
        torch.cuda.empty_cache()
    say()
    say(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
