"""`statetrack ...`: the command line. Thin: each sub-command module parses its arguments and calls the library."""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-commands: module statetrack.commands.<name with _ for ->; each defines register(subparsers) and sets `func`
_COMMANDS = (
    "demo",
    "tasks",
    "theory",
    "train",
    "eval",
    "reproduce",
    "generate",
    "ppl",
    "lm-eval",
    "convert-fla",
    "data",
    "pretrain",
    "inspect",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="statetrack", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(f"statetrack.commands.{name.replace('-', '_')}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
