"""`statetrack pretrain CONFIG [key=value ...] [--resume] [--out DIR]`: pretrain a causal LM (configs/lm/).

One process: ``statetrack pretrain configs/lm/tiny.yaml``. N processes (CPU, gloo) or N GPUs (nccl):
``torchrun --nproc-per-node N -m statetrack pretrain CONFIG ...``. Overrides and flags go in any order.
SIGINT/SIGTERM: every rank stops after the same step, a checkpoint is written, rank 0 says where in one line and
the exit status is 128 + the signal (torchrun, signalled itself, forwards SIGTERM and then reports its own).
"""

from __future__ import annotations

import sys

from . import add_run_arguments, run_overrides


def register(sub) -> None:
    p = sub.add_parser(
        "pretrain",
        help="pretrain a language model (one process, or N under torchrun)",
        description=__doc__.split("\n\n", 1)[1].strip()
        + " Example: `statetrack pretrain tiny train.steps=50 --out runs/tiny`.",
    )
    add_run_arguments(p, ("--resume", "--out", "--device", "--no-progress"),
                      "a YAML file, or a name under configs/lm/ (tiny, deltanet_340m_11, ...)")  # fmt: skip
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    from statetrack.lm.pretrain import pretrain
    from statetrack.lm.pretrain_config import load_pretrain_config

    overrides = run_overrides(args, "statetrack pretrain")
    main = int(os.environ.get("RANK", "0")) == 0
    try:
        cfg = load_pretrain_config(args.config, overrides)
        res = pretrain(cfg, resume=args.resume)
    except (ValueError, FileNotFoundError) as e:  # bad config, data or checkpoint: one line, no traceback
        raise SystemExit(f"statetrack pretrain: {e}") from None
    if res.stopped_by is not None:
        if main:
            print(f"statetrack pretrain: stopped by {res.stopped_by} at step {res.step}; checkpoint saved to "
                  f"{res.checkpoint}; continue with --resume", file=sys.stderr, flush=True)  # fmt: skip
        import signal

        return 128 + int(signal.Signals[res.stopped_by])
    if main:
        rate = "" if res.tokens_per_s is None else f", {res.tokens_per_s:,.0f} tokens/s"
        held = "" if res.eval_loss is None else f"; held-out loss {res.eval_loss:.4f}"
        print(f"{cfg.name}: {res.steps_run} steps in {res.wall_seconds:.1f} s{rate} (step {res.step} of "
              f"{cfg.train.steps}){held}; output in {res.out_dir}, the model in {res.model_dir}")  # fmt: skip
    return 0
