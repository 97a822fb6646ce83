"""`statetrack reproduce EXPERIMENT --budget smoke|quick|paper --out DIR`: the paper's tables and figures."""

from __future__ import annotations

import signal
import sys
import threading

_HELP = {
    "table3": "Table 3 (best of 3) + Figure 6: 7 models x 4 Chomsky tasks x 4 lrs x 3 seeds",
    "table5": "Table 5 (median +- MAD): the same runs as table3",
    "figure1": "Figure 1: diagonal LRNN on parity, [0,1] vs [-1,1], accuracy vs steps, 3 seeds",
    "figure4": "Figures 4 and 7: S5 variants, DeltaNet 1L/5L, Mamba 5L, full matrix; prefix accuracy vs length",
    "figure8": "Figure 8: Z60 with 1 and 2 tokens per transition",
}


# the on/off options, in the order command_line records them (--dry-run never reaches it: it trains nothing)
_SWITCHES = {
    "--report-only": "train nothing; write the outputs from cached runs (runs made on GPUs: add --device cuda, no "
    "GPU needed)",
    "--keep-checkpoints": "keep each run's final checkpoint.pt",
    "--no-progress": "no progress bar",
    "--compile": "torch.compile each model on GPUs (~2x the steps/s; the same runs)",
    "--mps": "share each GPU between the worker processes through NVIDIA MPS (started for the sweep if none runs)",
    "--no-deterministic": "train without train.deterministic (faster; a rerun of a key may then differ: "
    "docs/reproduce.md)",
    "--no-ensemble": "train one run per process (the default on a CPU); without it, on GPUs, the runs of a cell "
    "that differ only in lr and seed train as one batched model, each with the result it has alone (docs/reproduce.md)",
    "--ensemble": "train the runs of a cell as one batched model on a CPU too (the default on GPUs)",
    "--dry-run": "list the runs and their cache state; train nothing",
}


def register(sub) -> None:
    p = sub.add_parser(
        "reproduce",
        help="reproduce the paper's tables and figures (resumable sweep, cached runs)",
        description="Train every run of one of the paper's tables or figures (skipping finished ones, cached "
        "under --out/runs/ by their config's hash), then write a Markdown table with our value and the paper's "
        "in every cell, PNG figures and the raw per-run JSON under --out/EXPERIMENT/. Budgets: smoke (seconds "
        "per run on a CPU, tiny models, part of the grid: tests only), quick (the paper's settings with few "
        "steps: all of Table 3 in about 30 min of one H100), paper (the paper's step counts). See docs/reproduce.md.",
    )
    p.add_argument("experiment", choices=list(_HELP), help="; ".join(f"{k}: {v}" for k, v in _HELP.items()))
    p.add_argument("--budget", choices=["smoke", "quick", "paper"], default="quick", help="(default quick)")
    p.add_argument("--out", required=True, help="output folder (runs cached under OUT/runs/; reuse it to resume)")
    p.add_argument("--device", default="auto", help="auto (all visible GPUs, else CPU), cpu, cuda, cuda:0,1 ...")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="runs at once (default: --per-gpu x GPUs; 1 on a CPU); <= 1 runs in this process",
    )
    p.add_argument(
        "--per-gpu",
        type=int,
        default=8,
        help="runs at once on each GPU when --workers is not given (8: what an 80 GB H100 holds)",
    )
    p.add_argument("--steps", type=int, default=None, help="override the budget's steps per run (recorded)")
    p.add_argument(
        "--ensemble-size",
        type=int,
        default=None,
        help="at most this many runs per ensemble (default: all runs of a cell, 12 for Table 3)",
    )
    p.add_argument(
        "--shard",
        default=None,
        help="I/N: train only every N-th run of the plan from the I-th, cached ones skipped (cluster array jobs; docs)",
    )
    p.add_argument(
        "--only",
        default=None,
        metavar="KEY=V[|V..][,KEY=..]",
        help="a slice of the grid, e.g. --only 'model=DeltaNet [-1,1]|Mamba [0,1],task=modarith' (keys: model, "
        "task, lr, seed); same cache keys as the full sweep; its report goes to OUT/EXPERIMENT-only-<slice>/",
    )
    for flag, text in _SWITCHES.items():
        p.add_argument(flag, action="store_true", help=text)
    p.set_defaults(func=run)


def run(args) -> int:
    from statetrack.reproduce import load_result, plan, reproduce

    try:
        plan(args.experiment, args.budget, "cpu", args.steps, only=args.only)  # a bad --only: one line, exit 2
    except ValueError as e:
        print(f"statetrack reproduce: {e}", file=sys.stderr)
        return 2
    if args.ensemble and args.no_ensemble:
        print("statetrack reproduce: --ensemble and --no-ensemble exclude each other", file=sys.stderr)
        return 2
    if args.dry_run:
        runs, budget, devices = plan(args.experiment, args.budget, args.device, args.steps, only=args.only)
        n_cached = 0
        for r in runs:
            cached = load_result(args.out, r.key) is not None
            n_cached += cached
            print(f"{r.key}  {'cached ' if cached else 'missing'}  {r.task:<22} {r.model_label:<22} lr={r.lr:<7g} "
                  f"seed={r.seed}")  # fmt: skip
        print(f"{len(runs)} runs ({n_cached} cached) of {args.experiment} at budget {args.budget}, {budget.steps} "
              f"steps each, on {', '.join(devices)}")  # fmt: skip
        return 0
    # SIGTERM (a job scheduler's or `timeout`'s stop) ends the sweep like Ctrl-C: running runs stopped, MPS shut
    main_thread = threading.current_thread() is threading.main_thread()  # only it may set handlers
    old = signal.signal(signal.SIGTERM, _terminate_as_interrupt) if main_thread else None
    try:
        res = reproduce(args.experiment, args.budget, args.out, device=args.device, workers=args.workers,
                        per_gpu=args.per_gpu, shard=args.shard, report_only=args.report_only, steps=args.steps,
                        progress=not args.no_progress, keep_checkpoints=args.keep_checkpoints,
                        argv=command_line(args), compile_model=args.compile, mps=args.mps, only=args.only,
                        ensemble=True if args.ensemble else False if args.no_ensemble else None,
                        ensemble_size=args.ensemble_size or 0,
                        deterministic=not args.no_deterministic)  # fmt: skip
    except KeyboardInterrupt:
        return 130  # the sweep said what it kept; the usual exit status of an interrupted command
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, old)
    return res["exit_code"]


def _terminate_as_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def command_line(args) -> list[str]:
    """The invocation as arguments after `statetrack` (from the parsed options, so it is exact however the
    command was called, e.g. from Python through ``statetrack.cli.main``)."""
    argv = ["reproduce", args.experiment, "--budget", args.budget, "--out", args.out, "--device", args.device]
    only = getattr(args, "only", None)
    for flag, val in (("--workers", args.workers), ("--per-gpu", args.per_gpu if args.workers is None else None),
                      ("--steps", args.steps), ("--ensemble-size", getattr(args, "ensemble_size", None)),
                      ("--shard", args.shard), ("--only", only)):  # fmt: skip
        if val is not None:
            argv += [flag, str(val)]
    argv += [flag for flag in _SWITCHES if getattr(args, flag[2:].replace("-", "_"), False)]
    return argv
