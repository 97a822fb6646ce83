"""`statetrack eval CHECKPOINT --task ... --lengths ...`: per-length accuracy of a trained model."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a trained model per sequence length",
        description="Evaluate a checkpoint (file or run folder) on a task: per-length accuracy and scaled "
        "accuracy (prefix sequence accuracy for group tasks) as a table, JSON and a PNG plot.",
    )
    p.add_argument("checkpoint", help="checkpoint.pt or the run folder holding it")
    p.add_argument("--task", default=None, help="task name (default: the one the model was trained on)")
    p.add_argument("--lengths", default=None,
                   help="'LO-HI' (lengths drawn uniformly), 'L1,L2,...' (each length), or omit for the task's "
                        "fixed test set")  # fmt: skip
    p.add_argument("--samples", type=int, default=1024, help="sequences (per length for a list; default 1024)")
    p.add_argument("--size", default="small", choices=("small", "paper"), help="test-set size without --lengths")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled sequences")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of the table")
    p.add_argument("--plot", default=None, help="write a PNG of accuracy against length here")
    p.set_defaults(func=run)


def parse_lengths(spec: str) -> tuple[str, object]:
    """'40-256' -> ("range", (40, 256)); '40,64' -> ("list", [40, 64]); '64' -> ("list", [64])."""
    s = spec.replace(" ", "")
    form = f"--lengths must look like 40-256 or 40,64,128 (positive ints), got {spec!r}"
    try:
        if "-" in s:
            lo, hi = (int(v) for v in s.split("-", 1))
            vals = [lo, hi]
        else:
            vals = [int(v) for v in s.split(",") if v]
    except ValueError:
        raise ValueError(form) from None
    if not vals or min(vals) < 1:
        raise ValueError(form)
    if "-" in s:
        if lo > hi:
            raise ValueError(f"--lengths {spec}: the range's low end must not exceed its high end (try {hi}-{lo})")
        return "range", (lo, hi)
    return "list", vals


def _cat(batches, pad_id: int):
    """Concatenate task Batches of different lengths (right-padded with the task's pad id)."""
    import torch

    T = max(b.input.shape[1] for b in batches)

    def pad(x, v):
        return torch.nn.functional.pad(x, (0, T - x.shape[1]), value=v)

    first = batches[0]
    return type(first)(
        input=torch.cat([pad(b.input, pad_id) for b in batches]),
        target=torch.cat([pad(b.target, 0) for b in batches]),
        mask=torch.cat([pad(b.mask, False) for b in batches]),
        lengths=torch.cat([b.lengths for b in batches]),
    )


def run(args) -> int:
    try:
        return _run(args)
    except (ValueError, FileNotFoundError) as e:  # a missing or bad checkpoint, task or --lengths: one line
        raise SystemExit(f"statetrack eval: {e}") from None


def _run(args) -> int:
    import torch

    from statetrack.tasks import get_task
    from statetrack.train import evaluate, load_model, resolve_device
    from statetrack.train.report import format_table, length_bins, plot_vs_length

    lengths = None if args.lengths is None else parse_lengths(args.lengths)  # checked before the model loads
    if args.samples < 1 or args.batch_size < 1:
        raise ValueError(f"--samples and --batch-size must be >= 1, got {args.samples} and {args.batch_size}")
    device = resolve_device(args.device)
    model, cfg, step = load_model(args.checkpoint, device)
    task_name = args.task or cfg.train.task
    task = get_task(task_name, **(cfg.train.task_args if task_name == cfg.train.task else {}))
    if task.vocab_size > cfg.model.vocab_size:
        raise ValueError(
            f"task {task_name!r} has {task.vocab_size} tokens but the model was built for {cfg.model.vocab_size} "
            f"(it was trained on {cfg.train.task!r})"
        )
    g = torch.Generator().manual_seed(args.seed)
    if lengths is None:
        batch, what = task.test_set(size=args.size), f"test set ({args.size})"
    else:
        kind, val = lengths
        if kind == "range":
            batch, what = task.sample(args.samples, generator=g, lengths=val), f"lengths {val[0]}-{val[1]}"
        else:
            batch = _cat([task.sample(args.samples, generator=g, lengths=L) for L in val], task.pad_id)
            what = f"lengths {','.join(map(str, val))}"
    group = getattr(task, "kind", "chomsky") == "group"
    res = evaluate(model, batch, task.chance, batch_size=args.batch_size, device=device,
                   amp=device.type == "cuda", prefix=group)  # fmt: skip
    out = {"checkpoint": str(args.checkpoint), "step": step, "task": task_name, "evaluated_on": what,
           "mixer": cfg.model.mixer, "min_eigenvalue": cfg.model.min_eigenvalue, **res.to_dict()}  # fmt: skip
    if args.plot:
        if group:
            plot_vs_length({cfg.name: res.prefix_accuracy}, args.plot, "prefix sequence accuracy", task_name)
        else:
            plot_vs_length({cfg.name: res.scaled_per_length}, args.plot, "scaled accuracy", task_name)
        out["plot"] = args.plot
    if args.json:
        json.dump(out, sys.stdout, indent=1)
        print()
        return 0
    print(f"{cfg.name} ({cfg.model.mixer}, min_eigenvalue={cfg.model.min_eigenvalue}) at step {step} on "
          f"{task_name}, {what}, {res.n_sequences} sequences")  # fmt: skip
    rows = [(r, a, (a - task.chance) / (1 - task.chance), n)
            for r, a, n in length_bins(res.per_length, res.count_per_length)]  # fmt: skip
    print(format_table(["lengths", "accuracy", "scaled acc.", "n"], rows))
    if group and res.prefix_accuracy:
        Ls = sorted(res.prefix_accuracy)
        pick = sorted({Ls[min(len(Ls) - 1, round(i * (len(Ls) - 1) / 7))] for i in range(8)})
        print(format_table(["prefix length", "sequence accuracy"], [(L, res.prefix_accuracy[L]) for L in pick]))
    print(f"overall: accuracy {res.accuracy:.4f}, scaled accuracy {res.scaled_accuracy:.4f}")
    if args.plot:
        print(f"plot: {args.plot}")
    return 0
