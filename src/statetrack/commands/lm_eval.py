"""`statetrack lm-eval MODEL_DIR --tasks T1,T2`: lm-evaluation-harness tasks on a saved model."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("lm-eval", help="run lm-evaluation-harness tasks on a saved model",
                       description="Evaluate a saved model with lm-eval's HFLM; --include-path adds a folder of "
                       "local task YAMLs (hub datasets need a network).")  # fmt: skip
    p.add_argument("model_dir")
    p.add_argument("--tasks", required=True, help="comma-separated lm-eval task names")
    p.add_argument("--include-path", default=None, help="folder of extra task YAMLs")
    p.add_argument("--limit", type=int, default=None, help="examples per task")
    p.add_argument("--num-fewshot", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="write the results JSON here")
    p.set_defaults(func=run)


def run(args) -> int:
    from statetrack.lm.generate import load_model
    from statetrack.lm.harness import run_lm_eval, summary

    try:
        model, tok = load_model(args.model_dir, args.device)
        res = run_lm_eval(model, tok, [t for t in args.tasks.split(",") if t], include_path=args.include_path,
                          limit=args.limit, batch_size=args.batch_size, num_fewshot=args.num_fewshot)  # fmt: skip
    except (ValueError, FileNotFoundError, OSError) as e:
        raise SystemExit(f"statetrack lm-eval: {e}") from None
    table = summary(res)
    for task, metrics in table.items():
        print(task + ": " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"model_dir": args.model_dir, "results": table}, indent=1))
    return 0
