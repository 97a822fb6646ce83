"""`statetrack train CONFIG [key=value ...]`: train a model on a task from a config file under configs/."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on a state-tracking task",
        description="Train a model from an experiment file (configs/*.yaml) with OmegaConf dot-list overrides, "
        "e.g. `statetrack train configs/parity_deltanet.yaml model.min_eigenvalue=0 train.steps=2000`.",
    )
    p.add_argument("config", help="experiment YAML file (see configs/)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. model.min_eigenvalue=0")
    p.add_argument("--resume", action="store_true", help="continue from <out_dir>/checkpoint.pt")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (overrides train.device)")
    p.add_argument("--out", default=None, help="output folder (overrides train.out_dir)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from statetrack.train import load_config, train

    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"train.device={args.device}")
    if args.out:
        overrides.append(f"train.out_dir={args.out}")
    if args.compile:
        overrides.append("train.compile=true")
    if args.no_progress:
        overrides.append("train.progress=false")
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
