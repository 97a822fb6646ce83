"""Training speed of a sweep cell as one ensemble against its runs alone (issue: reproduction at the paper's budget).

    python -m benchmarks.ensemble_steps [--experiment table3] [--task modarith] [--budget paper]
        [--models "DeltaNet [-1,1],Mamba [-1,1]"] [--members 12] [--steps 300] [--no-alone] [--profile]
        [--out FILE.md]

A cell is the runs of one (model, task) of ``statetrack reproduce``'s grid that differ only in lr and seed (their
configs at ``--budget``, on this device; only ``train.steps`` and the logging changed). For each model: the cell's
first ``--members`` runs trained as one ensemble (``statetrack.train.ensemble.train_ensemble``, the sweep's GPU
default) and its first run alone (``statetrack.train.train``), each ``--steps`` steps. Rates come from the metrics
logs after their first line (graph capture and warm-up excluded), sampling and prefetch included. Printed: ensemble
steps/s, run-steps/s (members x steps/s) against the run alone, and the GPU minutes the cell's runs take at the
budget's steps per run, as an ensemble and one by one. ``--profile``: then each model's ensemble again for 40
steps under torch.profiler, its top CUDA kernels by time.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
import time
from pathlib import Path

import torch

from statetrack.reproduce import build_runs, get_budget
from statetrack.train import train as train_alone
from statetrack.train.ensemble import train_ensemble

from .harness import Report, has_cuda, parser, steady_rate, train_logs


def timing_config(cfg, steps: int, out: Path):
    """cfg with ``steps`` steps, six log lines, no evaluation or checkpoints, files under ``out``."""
    tc = dataclasses.replace(cfg.train, steps=steps, log_every=max(1, steps // 6), eval_every=0, ckpt_every=0,
                             out_dir=str(out), progress=False)  # fmt: skip
    return dataclasses.replace(cfg, train=tc)


def member_configs(members, steps: int, tmp: str) -> list:
    """The timing configs of ``members`` (RunSpecs), each writing under its own folder of ``tmp``."""
    return [timing_config(r.config, steps, Path(tmp) / f"m{i}") for i, r in enumerate(members)]


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--experiment", default="table3")
    p.add_argument("--task", default="modarith")
    p.add_argument("--budget", default="paper", help="the budget whose configs (and steps per run) are timed")
    p.add_argument("--models", default="DeltaNet [-1,1],Mamba [-1,1]", help="model labels, comma-separated")
    p.add_argument("--members", type=int, default=12, help="ensemble members (the cell's first runs)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--no-alone", action="store_true", help="skip the run alone")
    p.add_argument("--profile", action="store_true", help="then the top CUDA kernels of 40 ensemble steps")
    args = p.parse_args(argv)
    if args.members < 1 or args.steps < 12:  # fewer than 12 steps leave no rate after the first of six log lines
        p.error(f"--members takes >= 1 and --steps >= 12, got {args.members} and {args.steps}")
    if not has_cuda("benchmarks.ensemble_steps"):
        return 2
    budget = get_budget(args.experiment, args.budget)
    runs = build_runs(args.experiment, budget, device_type="cuda")
    rep = Report("ensemble_steps", f"A {args.experiment} cell as one ensemble vs its runs alone", args.out)
    rep.header(f"cells: task {args.task}, the {args.budget} budget's configs ({budget.steps} steps a run), "
               f"{args.steps} steps timed; rates after the first of six log lines")  # fmt: skip
    rep.table("model", "members", "ensemble steps/s", "run-steps/s", "alone steps/s", "gain",
              "cell GPU min, ensemble", "cell GPU min, alone", right=7)  # fmt: skip
    labels = [m.strip() for m in re.split(r",(?![^\[]*\])", args.models) if m.strip()]  # "[-1,1]" keeps its comma
    cells = {label: [r for r in runs if r.model_label == label and r.task == args.task] for label in labels}
    notes = []
    for label, cell in cells.items():
        if not cell:
            notes.append(f"- {label}: no runs of that label and task")
            continue
        with rep.section(label):
            E, ens, alone, wall, peak = time_cell(cell[: args.members], args.steps, not args.no_alone)
            minutes = len(cell) * budget.steps / 60
            rep.row(label, E, f"{ens:.1f}", f"{E * ens:.0f}", f"{alone:.1f}", f"{E * ens / alone:.2f}x",
                    f"{minutes / (E * ens):.1f}", f"{minutes / alone:.1f}")  # fmt: skip
            notes.append(f"- {label}: the ensemble's {args.steps} steps took {wall:.0f} s in all, peak {peak:.1f} GiB")
    for label, cell in cells.items() if args.profile else ():
        if not cell:
            continue
        with rep.section(f"profile {label}"), tempfile.TemporaryDirectory() as tmp:
            cfgs = member_configs(cell[: args.members], 40, tmp)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                train_ensemble(cfgs)
            notes.append(f"\n## {label}: 40 ensemble steps (capture and warm-up included), top CUDA kernels\n")
            notes.append("```\n" + prof.key_averages().table(sort_by="cuda_time_total", row_limit=30,
                                                               max_name_column_width=70) + "\n```")  # fmt: skip
    rep.say()
    for n in notes:
        rep.say(n)
    return rep.done()


def time_cell(members, steps: int, alone: bool) -> tuple[int, float, float, float, float]:
    """(members, ensemble steps/s, the first run's steps/s alone (nan if not ``alone``), the ensemble's wall
    seconds, its peak GiB)."""
    torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        cfgs = member_configs(members, steps, tmp)
        t0 = time.perf_counter()
        train_ensemble(cfgs)
        wall = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() / 2**30
        ens = steady_rate(train_logs(Path(cfgs[0].train.out_dir)))
        one = float("nan")
        if alone:
            cfg = timing_config(members[0].config, steps, Path(tmp) / "alone")
            train_alone(cfg)
            one = steady_rate(train_logs(Path(cfg.train.out_dir)))
    return len(members), ens, one, wall, peak


if __name__ == "__main__":
    raise SystemExit(main())
