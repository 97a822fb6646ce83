"""Steps per second of the real training loop (``statetrack.train.train``: sampling, prefetch, step, logging), per
mixer, with the step as a CUDA graph and eagerly. Not a test.

    python -m benchmarks.train_loop [--mixers deltanet,transformer,...] [--steps 600] [--compile] [--out FILE.md]
                                    [--selective-algorithms auto,tiles,steps]   # Mamba's scan kernels
                                    [--deterministic off,on]   # the cost of train.deterministic

Model and data: the paper's parity setting (configs/parity_<mixer>.yaml where it exists, else parity_deltanet's
with the mixer swapped): 2 layers, width 128, 4 heads, batch 1024, lengths 3-40. The rate is taken from the
metrics log between the first and the last log line (warm-up, compilation and graph capture excluded).
``--selective-algorithms`` runs Mamba once per ``model.settings.algorithm`` (the selective scan's documented
``algorithm=``). ``--deterministic off,on`` runs each once per ``train.deterministic`` value (what
``statetrack reproduce`` pays for bitwise-repeatable runs, docs/reproduce.md). ``--profile MIXER`` prints the top
CUDA kernels of the trainer's eager step for that mixer.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from statetrack.models import TokenClassifier
from statetrack.tasks import get_task
from statetrack.train import autocast_factory, load_config, make_optimizer, make_step, masked_cross_entropy
from statetrack.train import train as run_training

from .harness import ROOT, Report, has_cuda, parser, steady_rate, train_logs

ANCHOR = "flash-linear-attention 0.6.0 DeltaNet model, same size, H100: 36 steps/s; target 180 steps/s"


def config(mixer: str, overrides: list[str]):
    cfg_file = ROOT / "configs" / f"parity_{mixer}.yaml"
    base = [] if cfg_file.exists() else [f"model.mixer={mixer}"]
    return load_config(cfg_file if cfg_file.exists() else ROOT / "configs" / "parity_deltanet.yaml",
                       [*base, *overrides])  # fmt: skip


def rate(mixer: str, graph: str, steps: int, device: str, out: Path, compile_: bool = False,
         algorithm: str = "auto", deterministic: bool = False) -> tuple:  # fmt: skip
    """(steps/s after the first log line, wall seconds, first and last logged loss)."""
    cfg = config(mixer, [
        f"train.steps={steps}", "train.eval_every=0", f"train.log_every={max(1, steps // 6)}", "train.eval_samples=64",
        f"train.device={device}", f"train.cuda_graph={graph}", "train.progress=false", f"train.out_dir={out}",
        f"train.compile={str(compile_).lower()}", f"train.deterministic={str(deterministic).lower()}",
        *([f"model.settings.algorithm={algorithm}"] if algorithm != "auto" else []),
    ])  # fmt: skip
    t0 = time.perf_counter()
    run_training(cfg)
    wall = time.perf_counter() - t0
    logs = train_logs(out)
    return steady_rate(logs), wall, logs[0]["loss"], logs[-1]["loss"]


def profile(mixer: str, device: str, steps: int = 10) -> str:
    """Top CUDA kernels of ``steps`` eager training steps (graphs hide their kernels from the profiler)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof_ctx

    cfg = config(mixer, [])
    task = get_task("parity")
    cfg.model.vocab_size = task.vocab_size
    dev = torch.device(device)
    model = TokenClassifier(cfg.model).to(dev)
    opt = make_optimizer(model, cfg.train, dev, graphed=False)
    step = make_step(
        model, model, opt, masked_cross_entropy, cfg.train.grad_clip, autocast_factory("cuda", True, False)
    )
    b = task.sample(1024, generator=0, lengths=(40, 40))
    x, y, m = (t.to(dev) for t in (b.input, b.target, b.mask))
    for _ in range(3):
        step(x, y, m)
    torch.cuda.synchronize()
    with prof_ctx(activities=[ProfilerActivity.CUDA]) as p:
        for _ in range(steps):
            step(x, y, m)
        torch.cuda.synchronize()
    return p.key_averages().table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=70)


def build_parser():
    ap = parser(__doc__)
    ap.add_argument("--mixers", default="deltanet,gated_deltanet,deltaproduct,mamba,transformer")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--modes", default="on,off", help="train.cuda_graph values to run")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model as well")
    ap.add_argument("--profile", default="", help="print the top CUDA kernels of eager steps of this mixer")
    ap.add_argument("--selective-algorithms", default="auto", help="mamba only: selective_scan algorithms to compare")
    ap.add_argument("--deterministic", default="off", help="train.deterministic values to run (off, on or off,on)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.device.startswith("cuda") and not has_cuda("benchmarks.train_loop (or --device cpu)"):
        return 2
    rep = Report("train_loop", "# Training-loop steps/s, parity (2 layers, width 128, 4 heads, batch 1024, lengths "
                 "3-40)", args.out, print_only=args.print_only, device=args.device, argv=argv)  # fmt: skip
    rep.header(f"anchor: {ANCHOR}", f"torch.compile: {args.compile}")
    rep.say("The losses show that the run trains (lr 1e-3, 10% warm-up, parity is learnt within a few thousand steps).")
    rep.say()
    rep.table("mixer", "CUDA graph", "deterministic", "steps/s", "wall s (incl. start-up)", "loss at first / last log")
    dets = [{"on": True, "off": False}[v.strip()] for v in args.deterministic.split(",")]
    runs = [(m, mode, alg, det) for m in args.mixers.split(",") for mode in args.modes.split(",")
            for alg in (args.selective_algorithms.split(",") if m == "mamba" else ["auto"])
            for det in dets]  # fmt: skip
    for mixer, mode, alg, det in runs:
        name = mixer if alg == "auto" else f"{mixer} (selective scan: {alg})"
        on_off = "on" if det else "off"
        with tempfile.TemporaryDirectory() as d:
            try:
                r, wall, l0, l1 = rate(mixer, mode, args.steps, args.device, Path(d), args.compile, alg, det)
                rep.row(name, mode, on_off, f"{r:.1f}", f"{wall:.1f}", f"{l0:.4f} / {l1:.4f}")
            except Exception as e:  # noqa: BLE001 - report and go on
                rep.row(name, mode, on_off, f"failed: {type(e).__name__}: {str(e)[:80]}", "", "")
    if args.profile:
        with rep.section("profile"):
            rep.say()
            rep.say(f"## Top CUDA kernels of 10 eager steps: {args.profile}")
            rep.code(profile(args.profile, args.device))
    return rep.done()


if __name__ == "__main__":
    raise SystemExit(main())
