"""Where the delta rule's kernel time goes on a GPU: each Triton kernel's share of forward+backward, per dot
precision, at the long-sequence shapes where fla's chunk path is faster than ours (or, with --algorithm
recurrent, of the token-by-token kernels).

    python -m benchmarks.delta_rule_profile [--shapes "4,2048,16,128;2,8192,16,128"] [--precisions tf32x3,tf32]
        [--algorithm chunk|recurrent] [--configs "BV_grad=64;warps_grad=4;chunk_size=32"] [--out FILE.md]

Per shape and precision: forward+backward ms (triton.testing.do_bench median), then the CUDA time of every kernel over
10 forward+backward calls (torch.profiler), largest first, with its share. The precisions are those of
``delta_rule(precision=...)``: tf32x3 (three tf32 passes per fp32 product; "auto" for fp32 inputs), tf32 (one pass),
ieee (chunked kernels only), bf16 ("auto" for bf16 inputs). ``--configs``: ``delta_rule(triton_config=...)`` settings to
time instead (keys of ``statetrack.ops.delta_rule.CHUNK_TUNING`` or ``RECURRENT_TUNING``; ``chunk_size=N`` is the
chunk_size argument), each a row of fwd+bwd ms and its largest kernels, at the first precision. bf16 inputs,
beta ~ U[0, 2], unit keys, input range checks off.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from statetrack.ops import value_checks

from .delta_rule_kernels import bench_fwd_bwd, cast, make_inputs, ours, pairs
from .harness import Report, has_cuda, parser

NAMES = ["q", "k", "v", "beta"]


def kernel_times(fn, x, calls: int = 10) -> dict[str, float]:
    """CUDA ms per forward+backward call of each kernel (summed over its launches), by kernel name."""
    from torch.profiler import ProfilerActivity, profile

    leaves = [x[n] for n in NAMES]
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


def runner(algorithm: str, precision: str | None, config: dict | None = None):
    kw = {"algorithm": algorithm}
    if config:
        config = dict(config)
        if "chunk_size" in config:
            kw["chunk_size"] = int(config.pop("chunk_size"))
        if config:
            kw["triton_config"] = config
    if precision and algorithm == "chunk":
        kw["precision"] = precision
    return lambda z: ours(z, **kw)


def tune(rep: Report, x, algorithm: str, precision: str, configs: list[str]) -> None:
    """A row per config: fwd+bwd ms (fwd ms) [peak MiB] and the three largest kernels' ms."""
    rep.say()
    rep.table(f"config (precision {precision})", "fwd+bwd ms (fwd) [MiB]", "largest kernels, ms")
    for text in ["default", *configs]:
        fn = runner(algorithm, precision, None if text == "default" else pairs(text))
        try:
            fb, fwd, peak = bench_fwd_bwd(fn, x, NAMES)
            top = sorted(kernel_times(fn, x).items(), key=lambda kv: -kv[1])[:3]
            rep.row(text, f"{fb:.3f} ({fwd:.3f}) [{peak:.0f}]", ", ".join(f"{k} {ms:.3f}" for k, ms in top))
        except Exception as e:  # noqa: BLE001 - a config that does not compile or run is a row, not the end
            rep.row(text, f"failed: {type(e).__name__}: {str(e)[:100]}", "")


def build_parser():
    ap = parser(__doc__)
    ap.add_argument("--shapes", default="4,2048,16,128;2,8192,16,128", help="B,T,H,D;B,T,H,D;...")
    ap.add_argument("--precisions", default="tf32x3,tf32")
    ap.add_argument("--algorithm", default="chunk", choices=("chunk", "recurrent"))
    ap.add_argument("--configs", default="", help="';'-separated settings to time, e.g. BV_grad=64;chunk_size=32")
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes.split(";") if s]
    if any(len(s) != 4 for s in shapes):
        ap.error(f"--shapes: each shape is B,T,H,D, got {args.shapes!r}")
    if not has_cuda("benchmarks.delta_rule_profile"):
        return 2
    precisions = args.precisions.split(",") if args.algorithm == "chunk" else ["(none: token by token)"]
    title = f"# Delta rule ({args.algorithm} kernels): time per kernel, forward+backward, bf16"
    rep = Report("delta_rule_profile", title, args.out, print_only=args.print_only, argv=argv)
    rep.header()
    with value_checks(False):
        for B, T, H, D in shapes:
            x = cast(make_inputs(B, T, H, D), torch.bfloat16, grad=True)
            if args.configs:
                rep.say()
                rep.say(f"## B, T, H, D = {B}, {T}, {H}, {D}: block settings")
                with rep.section(f"configs at {B, T, H, D}"):
                    configs = [c for c in args.configs.split(";") if c.strip()]
                    tune(rep, x, args.algorithm, precisions[0] if args.algorithm == "chunk" else None, configs)
            else:
                for prec in precisions:
                    with rep.section(f"{B, T, H, D} {prec}"):
                        fn = runner(args.algorithm, prec)
                        fb, fwd, peak = bench_fwd_bwd(fn, x, NAMES)
                        times = kernel_times(fn, x)
                        total = sum(times.values())
                        rep.say()
                        rep.say(f"## B, T, H, D = {B}, {T}, {H}, {D}, precision {prec}: fwd+bwd {fb:.3f} ms (fwd "
                                f"{fwd:.3f}), peak {peak:.0f} MiB; kernels {total:.3f} ms")  # fmt: skip
                        rep.say()
                        rep.table("kernel", "ms per fwd+bwd", "share", right=2)
                        for k, ms in sorted(times.items(), key=lambda kv: -kv[1])[:12]:
                            rep.row(k[:70], f"{ms:.3f}", f"{ms / total:.0%}")
            del x
            torch.cuda.empty_cache()
    rep.say()
    return rep.done()


if __name__ == "__main__":
    raise SystemExit(main())
