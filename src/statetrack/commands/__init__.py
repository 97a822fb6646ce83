"""Sub-commands of the `statetrack` CLI, one module each (see statetrack.cli), and what the run commands
(`train`, `pretrain`) share: ``CONFIG [key=value ...]`` with flags and overrides in any order, the flags turned
into overrides."""

from __future__ import annotations

import argparse

# flag -> (argparse keywords, the override it stands for: "train.key" takes the value, "train.key=v" is fixed)
RUN_FLAGS: dict[str, tuple[dict, str | None]] = {
    "--resume": ({"action": "store_true", "help": "continue from the newest good checkpoint of the run"}, None),
    "--out": ({"default": None, "help": "output folder (overrides train.out_dir)"}, "train.out_dir"),
    "--device": ({"default": None, "help": "cpu, cuda, cuda:N or auto (overrides train.device)"}, "train.device"),
    "--compile": ({"action": "store_true", "help": "torch.compile the model"}, "train.compile=true"),
    "--no-progress": ({"action": "store_true", "help": "no progress bar"}, "train.progress=false"),
}


# --data of the commands that read text through a model (ppl, inspect): lm.perplexity.read_token_stream's rule
TEXT_DATA_HELP = ("a prepared dataset folder (its validation split), a .txt (documents separated by blank lines) "
                  "or a .jsonl file")  # fmt: skip


def add_run_arguments(p: argparse.ArgumentParser, flags: tuple[str, ...], config_help: str) -> None:
    """CONFIG, then everything else (overrides and ``flags`` of RUN_FLAGS, in any order; see :func:`run_overrides`)."""
    p.add_argument("config", help=config_help)
    p.add_argument("rest", nargs=argparse.REMAINDER, help="key=value overrides and the options, in any order")
    for f in flags:
        p.add_argument(f, **RUN_FLAGS[f][0])
    p.set_defaults(run_flags=flags)


def run_overrides(args, prog: str) -> list[str]:
    """The overrides of a run command: the ``key=value`` words after CONFIG, then those its flags stand for
    (flags may come before or after CONFIG). Sets the flags on ``args``; an unknown option exits with one line."""
    late = argparse.ArgumentParser(prog=prog, add_help=False)
    for f in args.run_flags:
        late.add_argument(f, **{**RUN_FLAGS[f][0], "default": argparse.SUPPRESS})
    known, overrides = late.parse_known_args(args.rest)
    for o in overrides:
        if o.startswith("-"):
            raise SystemExit(f"{prog}: unknown option {o!r} (see {prog} --help)")
    for k, v in vars(known).items():
        setattr(args, k, v)
    for f in args.run_flags:
        value, key = getattr(args, f[2:].replace("-", "_")), RUN_FLAGS[f][1]
        if key is not None and value not in (None, False):
            overrides.append(key if "=" in key else f"{key}={value}")
    return overrides
