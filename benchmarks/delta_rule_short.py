"""Short-sequence delta rule on a GPU: our token-by-token Triton kernels vs our chunked ones, the torch chunked path
and flash-linear-attention (fused_recurrent and chunk), forward+backward, bf16, in one run.

    python benchmarks/delta_rule_short.py [--out FILE.md] [--no-fla] [--tune]

The shapes are those of the state-tracking experiments (many sequences of 32-512 tokens, small heads) and the
T sweep that places the switch between the two Triton kernels (``RECURRENT_MAX_STEPS``). ``--tune`` also times
the recurrent kernel's block/warp choices at one shape. Timing: triton.testing.do_bench medians after warm-up.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernels as kb  # noqa: E402 - the shared runners, inputs and timer of benchmarks/kernels.py
from report import save_to  # noqa: E402
from statetrack.ops import delta_rule, value_checks  # noqa: E402
from statetrack.ops._triton import pow2  # noqa: E402
from statetrack.ops.delta_rule.api import _normalize  # noqa: E402
from statetrack.ops.delta_rule.triton import delta_rule_recurrent_triton, delta_rule_triton  # noqa: E402
from statetrack.ops.delta_rule.triton import recurrent as rec  # noqa: E402

SHAPES = [(1024, 40, 4, 32), (512, 32, 4, 32), (512, 64, 4, 32), (512, 128, 4, 32), (512, 256, 4, 32),
          (512, 512, 4, 32), (64, 256, 8, 64), (8, 1024, 8, 64)]  # fmt: skip


def _normal(x):
    k, v, b, _ = _normalize(x["q"], x["k"], x["v"], x["beta"], x["log_decay"], None, None)
    return x["q"], k, v, b, x["log_decay"], x["q"].shape[-1] ** -0.5


def ours_recurrent(x):
    q, k, v, b, g, s = _normal(x)
    return delta_rule_recurrent_triton(q, k, v, b, g, s, None)


def ours_chunk(x):
    q, k, v, b, g, s = _normal(x)
    return delta_rule_triton(q, k, v, b, g, s, None)


def torch_chunk(x):
    return delta_rule(**x, output_final_state=True, backend="torch")


def cell(fn, x, names):
    res, err = kb.try_run(lambda: kb.bench_fwd_bwd(fn, x, names))
    return (f"{res[0]:.3f} ({res[1]:.3f}) [{res[2]:.0f}]", res[0]) if res else (f"- ({err[:40]})", None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--no-fla", action="store_true")
    ap.add_argument("--tune", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--no-chunk", action="store_true", help="leave out our chunked kernels")
    args = ap.parse_args()
    save_to(args.out)  # the report file grows line by line: a run cut short keeps what it measured
    t0 = time.time()
    import triton

    fla, fla_ver = (None, "disabled (--no-fla)") if args.no_fla else kb.fla_modules()
    value_checks(False).__enter__()  # like fla (and like training after its first step): no input range checks
    kb.say("# Short-sequence delta rule: ours (Triton recurrent / chunked, torch chunked) vs flash-linear-attention")
    kb.say()
    kb.say(f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
    kb.say(f"- device: {torch.cuda.get_device_name()}")
    py = platform.python_version()
    kb.say(f"- torch {torch.__version__}, triton {triton.__version__}, fla {fla_ver}, python {py}")
    kb.say(f"- command: `python {' '.join(sys.argv)}`")
    kb.say(f"- recurrent kernel used by backend='triton' up to {rec.RECURRENT_MAX_STEPS} sub-steps per sequence")
    kb.say()
    kb.say("forward+backward ms (forward ms) [peak MiB beyond inputs], bf16, beta ~ U[0, 2], unit keys; gated = with")
    kb.say("a scalar gate; n_h=2 = two Householders per token at the same width. Best fla = fastest fla path.")
    kb.say("Input range checks off for ours (value_checks(False), as in training after the first step).")
    kb.say()
    kb.say("| B, T, H, D | ours recurrent | ours rec. gated | ours rec. n_h=2 | ours chunked | torch chunked"
           " | fla fused_recurrent | fla chunk | ours rec. vs best fla |")  # fmt: skip
    kb.say("|---|---|---|---|---|---|---|---|---|")
    for B, T, H, D in SHAPES:
        x = kb.cast(kb.make_inputs(B, T, H, D), torch.bfloat16, grad=True)
        xg = kb.cast(kb.make_inputs(B, T, H, D, gate=True), torch.bfloat16, grad=True)
        x2 = kb.cast(kb.make_inputs(B, T, H, D, n_h=2), torch.bfloat16, grad=True)
        names, gnames = ["q", "k", "v", "beta"], ["q", "k", "v", "beta", "log_decay"]
        r, t_r = cell(ours_recurrent, x, names)
        rg, _ = cell(ours_recurrent, xg, gnames)
        r2, _ = cell(ours_recurrent, x2, names)
        c, _ = ("-", None) if args.no_chunk else cell(ours_chunk, x, names)
        tc, _ = cell(torch_chunk, x, names)
        fr, t_fr = cell(lambda z: kb.fla_recurrent(fla, z), x, names) if fla else ("-", None)
        fc, t_fc = cell(lambda z: kb.fla_chunk(fla, z), x, names) if fla else ("-", None)
        best = min([t for t in (t_fr, t_fc) if t is not None], default=None)
        ratio = f"{best / t_r:.2f}x" if best and t_r else "-"
        kb.say(f"| {B}, {T}, {H}, {D} | {r} | {rg} | {r2} | {c} | {tc} | {fr} | {fc} | {ratio} |")
        del x, xg, x2
        torch.cuda.empty_cache()
    if args.tune:
        kb.say()
        kb.say("## Recurrent kernel blocks (BV, warps) at B=1024, T=40, H=4, D=32 and B=64, T=256, H=8, D=64")
        kb.say()
        kb.say("| shape | BT | BV | warps | fwd+bwd ms (fwd ms) [MiB] |")
        kb.say("|---|---|---|---|---|")
        default, default_bt = rec._blocks, rec.BLOCK_T
        for B, T, H, D in ((1024, 40, 4, 32), (64, 256, 8, 64)):
            x = kb.cast(kb.make_inputs(B, T, H, D), torch.bfloat16, grad=True)
            for bt in (8, 16, 32):
                for bv in (16, 32, 64):
                    for warps in (1, 2, 4):
                        if bv > D:
                            continue
                        rec._blocks = lambda K, V, p, bv=bv, w=warps: (max(16, pow2(K)), bv, w)
                        rec.BLOCK_T = bt
                        s, _ = cell(ours_recurrent, x, ["q", "k", "v", "beta"])
                        kb.say(f"| {B}, {T}, {H}, {D} | {bt} | {bv} | {warps} | {s} |")
            rec._blocks, rec.BLOCK_T = default, default_bt
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        x = kb.cast(kb.make_inputs(1024, 40, 4, 32), torch.bfloat16, grad=True)
        do = torch.randn(1024, 40, 4, 32, device="cuda", dtype=torch.bfloat16)
        for _ in range(3):
            torch.autograd.grad(ours_recurrent(x)[0], [x[n] for n in ("q", "k", "v", "beta")], do)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(10):
                torch.autograd.grad(ours_recurrent(x)[0], [x[n] for n in ("q", "k", "v", "beta")], do)
            torch.cuda.synchronize()
        kb.say()
        kb.say("## Profile of 10 forward+backward calls at B=1024, T=40, H=4, D=32")
        kb.say()
        kb.say("```")
        kb.say(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=50))
        kb.say("```")
    kb.say()
    kb.say(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
