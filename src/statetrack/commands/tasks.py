"""`statetrack tasks list|describe|sample|test-set`: inspect the state-tracking tasks and their data."""

from __future__ import annotations

import argparse
import json
import sys


def _param(text: str) -> tuple[str, object]:
    """KEY=VALUE, VALUE parsed as JSON when it is JSON (4, true, [3, 40]) and kept as a string otherwise."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    if isinstance(parsed, list):
        parsed = tuple(parsed)
    return key.strip(), parsed


def _length(text: str):
    """L or LO:HI."""
    try:
        if ":" in text:
            lo, hi = text.split(":", 1)
            return (int(lo), int(hi))
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a length L or a range LO:HI, got {text!r}") from None


def _size(text: str):
    if text in ("paper", "small"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'paper', 'small' or an int, got {text!r}") from None


def _clean_errors(fn):
    """Bad task names or parameters are user errors: one line on stderr and exit status 2, no traceback."""

    def run(args) -> int:
        try:
            return fn(args)
        except (ValueError, TypeError) as e:
            print(f"statetrack tasks {args.tasks_command}: error: {e}", file=sys.stderr)
            return 2

    return run


def register(sub) -> None:
    p = sub.add_parser("tasks", help="list, describe and sample the state-tracking tasks")
    tsub = p.add_subparsers(dest="tasks_command", required=True, metavar="SUBCOMMAND")

    def with_task(sp):
        sp.add_argument("name", help="task name (see `statetrack tasks list`)")
        sp.add_argument(
            "--set",
            dest="overrides",
            type=_param,
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a task parameter (repeatable), e.g. --set num_tokens_per_transition=2",
        )

    sp = tsub.add_parser("list", help="print the registered tasks and their parameters")
    sp.add_argument("--json", action="store_true", help="one JSON object per line")
    sp.set_defaults(func=_clean_errors(run_list))

    sp = tsub.add_parser("describe", help="vocabulary, chance level, lengths and conventions of a task")
    with_task(sp)
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(func=_clean_errors(run_describe))

    sp = tsub.add_parser("sample", help="print sequences as JSON lines, exactly what a model sees")
    with_task(sp)
    sp.add_argument("--n", type=int, default=4, help="number of sequences (default 4)")
    sp.add_argument("--length", type=_length, default=None, help="L or LO:HI (default: the train range)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the torch.Generator (default 0)")
    sp.add_argument("--padded", action="store_true", help="print the padded rows instead of each row's own length")
    sp.add_argument("--text", action="store_true", help="add input_text / target_text with the token meanings")
    sp.set_defaults(func=_clean_errors(run_sample))

    sp = tsub.add_parser("test-set", help="size, shape and sha256 of a fixed test set (to compare machines)")
    with_task(sp)
    sp.add_argument("--size", type=_size, default="small", help="'paper', 'small' (default) or an int")
    sp.set_defaults(func=_clean_errors(run_test_set))


def _task(args):
    from statetrack.tasks import get_task

    return get_task(args.name, **dict(args.overrides))


def run_list(args) -> int:
    from statetrack.tasks import get_task, list_tasks
    from statetrack.tasks.base import PROTOCOL_PARAMS

    rows = []
    for name in list_tasks():
        t = get_task(name)
        gen = {k: v for k, v in t.params.items() if k not in PROTOCOL_PARAMS}
        rows.append((t, gen))
    if args.json:
        for t, _ in rows:
            d = t.describe()
            print(json.dumps({k: d[k] for k in ("name", "family", "kind", "params", "vocab_size", "chance")}))
        return 0
    head = f"{'name':<24}{'kind':<9}{'vocab':>6}{'chance':>9}{'train':>10}{'test':>10}  params"
    print(head)
    print("-" * len(head))
    for t, gen in rows:
        lengths = [f"{lo}-{hi}" if lo != hi else f"{lo}" for lo, hi in (t.train_lengths, t.test_lengths)]
        params = " ".join(f"{k}={v}" for k, v in gen.items())
        cols = f"{t.name:<24}{t.kind:<9}{t.vocab_size:>6}{t.chance:>9.4f}"
        print(f"{cols}{lengths[0]:>10}{lengths[1]:>10}  {params}")
    return 0


def run_describe(args) -> int:
    t = _task(args)
    d = t.describe()
    if args.json:
        print(json.dumps(d))
        return 0
    print(f"{d['name']} ({d['family']}, {d['kind']}): {d['summary']}")
    print(f"  params: {json.dumps(d['params'])}")
    print(f"  vocab ({d['vocab_size']}): " + ", ".join(f"{i}={m}" for i, m in d["vocab"].items()))
    print(f"  pad_id {d['pad_id']}, bos_id {d['bos_id']}, alphabet size {d['alphabet_size']}", end="")
    print(f", chance {d['chance']:.4g}")
    print(f"  lengths ({d['length_unit']}): train {d['train_lengths']}, test {d['test_lengths']}")
    ts = d["test_sets"]
    print(f"  test sets (version {ts['version']}): paper {ts['paper']}, small {ts['small']} sequences")
    if "group" in d:
        print(f"  group {d['group']} (order {d['group_order']}), {d['num_generators']} input elements")
        print(f"  convention: {d['convention']}")
    print(f"  theory: {d['theory']}")
    print(f"  source: {d['source']}")
    return 0


def run_sample(args) -> int:
    import torch

    if args.n < 1:
        raise SystemExit("statetrack tasks sample: --n must be >= 1")
    t = _task(args)
    b = t.sample(args.n, generator=torch.Generator().manual_seed(args.seed), lengths=args.length)
    out = sys.stdout
    for i in range(len(b)):
        T = b.input.shape[1] if args.padded else int(b.lengths[i])
        row = {
            "input": b.input[i, :T].tolist(),
            "target": b.target[i, :T].tolist(),
            "mask": b.mask[i, :T].int().tolist(),
        }
        if args.text:
            row["input_text"] = t.decode(row["input"])
            row["target_text"] = [m if k else "" for m, k in zip(t.decode(row["target"]), row["mask"], strict=True)]
        out.write(json.dumps(row) + "\n")
    return 0


def run_test_set(args) -> int:
    print(json.dumps(_task(args).test_set_info(args.size)))
    return 0
