"""What the benchmark scripts share: a report printed as it is made and written to ``--out`` line by line (a
run cut short by a time limit keeps what it measured), and sections that fail alone (a failing section is
reported in place, the others still run)."""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Callable
from pathlib import Path

LINES: list[str] = []
_OUT: list[Path] = []  # where every line is written as it comes (set by save_to)


def save_to(path: str | Path | None) -> None:
    """From now on, keep the report written to ``path`` (Markdown); nothing when None."""
    _OUT.clear()
    if path:
        _OUT.append(Path(path))
        save(path)


def start_gpu_report(path: str | Path | None) -> bool:
    """For the scripts that need a CUDA GPU: False (and why, on stderr) when there is none, else save_to(path)."""
    import sys

    import torch

    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return False
    save_to(path)
    return True


def say(s: str = "") -> None:
    """Print a report line now (a long run shows its progress) and keep it (and write it, after save_to)."""
    print(s, flush=True)
    LINES.append(s)
    for path in _OUT:
        path.write_text("\n".join(LINES) + "\n")


def fla_modules(*names: str) -> tuple[tuple | None, str]:
    """flash-linear-attention's modules ``names`` (e.g. "fla.ops.delta_rule") and its version, or (None, why)
    when fla is not importable here: the anchors are optional, ours run either way."""
    try:
        fla = importlib.import_module("fla")
        mods = tuple(importlib.import_module(n) for n in names)
    except Exception as e:  # noqa: BLE001 - any import failure means "not available"
        return None, f"not available ({type(e).__name__}: {e})"
    return mods, getattr(fla, "__version__", "?")


def run_sections(sections: list[tuple[str, Callable[[], object]]]) -> None:
    for name, fn in sections:
        try:
            fn()
        except Exception:  # noqa: BLE001 - keep the other sections
            say(f"section {name} failed:\n```\n{traceback.format_exc()[-3000:]}```")


def save(path: str | Path | None) -> None:
    """Write the report so far to ``path`` (Markdown); nothing when None."""
    if path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(LINES) + "\n")
