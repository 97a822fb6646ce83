"""`statetrack train CONFIG [key=value ...] [--out DIR] [--resume]`: train a model on a task (configs/*.yaml);
overrides and options in any order."""

from __future__ import annotations

from . import add_run_arguments, run_overrides


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on a state-tracking task",
        description="Train a model from an experiment file (configs/*.yaml) with OmegaConf dot-list overrides, "
        "e.g. `statetrack train configs/parity_deltanet.yaml model.min_eigenvalue=0 train.steps=2000`.",
    )
    add_run_arguments(p, ("--resume", "--device", "--out", "--compile", "--no-progress"),
                      "experiment YAML file (see configs/)")  # fmt: skip
    p.set_defaults(func=run)


def run(args) -> int:
    from statetrack.train import load_config, train

    overrides = run_overrides(args, "statetrack train")
    try:
        cfg = load_config(args.config, overrides)
        res = train(cfg, resume=args.resume)
    except (ValueError, FileNotFoundError) as e:  # bad config or missing file: one line, no traceback
        raise SystemExit(f"statetrack train: {e}") from None
    f = res.final
    print(f"{cfg.name}: {res.step} steps in {res.wall_seconds:.1f} s; output in {res.out_dir}")
    if f is not None:
        print(f"test: accuracy {f.accuracy:.4f}, scaled accuracy {f.scaled_accuracy:.4f}, loss {f.loss:.4f}")
    return 0
