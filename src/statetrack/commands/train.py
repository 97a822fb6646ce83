"""`statetrack train CONFIG [key=value ...] [--out DIR] [--resume]`: train a model on a task (a YAML file or a
packaged config's name, e.g. parity_deltanet); overrides and options in any order.

SIGINT / SIGTERM: the step finishes, a checkpoint is written, one line says where, and the exit status is
128 + the signal; `--resume` then continues exactly (so does it after a kill -9, from the last checkpoint).
"""

from __future__ import annotations

import sys

from . import add_run_arguments, run_overrides


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on a state-tracking task",
        description="Train a model from an experiment file (a path, or the name of a config that ships with "
        "statetrack: parity_deltanet, s5_deltanet_5l, ...) with OmegaConf dot-list overrides, e.g. `statetrack "
        "train parity_deltanet model.min_eigenvalue=0 train.steps=2000 --out runs/p0`. Ctrl-C (SIGINT) or "
        "SIGTERM saves a checkpoint and stops; --resume continues from the newest good checkpoint.",
    )
    add_run_arguments(p, ("--resume", "--device", "--out", "--compile", "--no-progress"),
                      "experiment YAML file, or a packaged config's name (parity_deltanet, ...)")  # fmt: skip
    p.set_defaults(func=run)


def run(args) -> int:
    from statetrack.train import TrainingStopped, load_config, train

    overrides = run_overrides(args, "statetrack train")
    try:
        cfg = load_config(args.config, overrides)
        res = train(cfg, resume=args.resume, handle_signals=True)
    except (ValueError, FileNotFoundError, FloatingPointError) as e:  # bad config, checkpoint, or a diverged run
        raise SystemExit(f"statetrack train: {e}") from None
    except TrainingStopped as e:  # SIGINT / SIGTERM: checkpointed
        print(f"statetrack train: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except KeyboardInterrupt:  # before the first step: nothing to save
        print("statetrack train: interrupted before the first step; nothing saved", file=sys.stderr, flush=True)
        return 130
    f = res.final
    rate = f" ({res.steps_per_s:.1f} steps/s)" if res.steps_per_s else ""
    print(f"{cfg.name}: {res.steps_run} steps in {res.wall_seconds:.1f} s{rate}, step {res.step} of "
          f"{cfg.train.steps}; output in {res.out_dir}")  # fmt: skip
    if f is not None:
        print(f"test: accuracy {f.accuracy:.4f}, scaled accuracy {f.scaled_accuracy:.4f}, loss {f.loss:.4f}")
    return 0
