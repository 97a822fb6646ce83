"""Atomic, verified checkpoints of a training run: everything needed to continue it exactly (model, optimiser,
scheduler, RNGs, step); the last ``train.keep_last`` are kept.

A run folder holds::

    checkpoint.pt                   the newest checkpoint
    checkpoint.step_00000050.pt     the ones before it (keep_last files in all)

Each is one ``torch.save`` file, written to a temporary file in the same folder, fsynced and renamed into place
(:mod:`statetrack.atomic`): a run killed while writing leaves the previous files whole, and its temporary file is
removed when the next run in that folder starts. The newest becomes ``checkpoint.step_<N>.pt`` by a hard link made
before the new one is renamed over it, so ``checkpoint.pt`` is never missing.

Before a file is unpickled its archive is checked (torch.save writes a zip with a CRC-32 per record): an empty,
truncated or damaged file is named with the reason; then it must hold the keys the caller needs. Loading a run
folder takes the newest good checkpoint, reporting each bad one by path and why (:func:`read_checkpoint`).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import sys
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from statetrack.atomic import atomic_write

CHECKPOINT = "checkpoint.pt"  # the newest checkpoint's file name in a run folder
RESUME_KEYS = ("model", "optimizer", "scheduler", "rng", "step", "config")  # what a resumed run reads
MODEL_KEYS = ("model", "config", "step")  # what loading a trained model reads
_OLDER = re.compile(r"^checkpoint\.step_(\d+)\.pt$")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and says why."""

    def __init__(self, path: str | Path, why: str):
        super().__init__(f"checkpoint {path} is unusable: {why}")
        self.path, self.why = Path(path), why

    def __reduce__(self):
        return type(self), (self.path, self.why)


def older_name(step: int) -> str:
    """The file name of the kept checkpoint of ``step`` (not the newest)."""
    return f"checkpoint.step_{step:08d}.pt"


def rng_states() -> dict:
    # numpy's legacy global generator is what third-party code may draw from, so that is the state to keep
    st = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}  # noqa: NPY002
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_states(st: dict) -> None:
    # a checkpoint loaded with map_location="cuda" brings the (CPU byte tensor) RNG states along to the GPU
    torch.set_rng_state(st["torch"].cpu())
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])  # noqa: NPY002
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in st["cuda"]])


@contextlib.contextmanager
def _crc32_on():
    # the records' CRC-32s are what checkpoint_problem verifies; torch writes them by default, make sure
    old = torch.serialization.get_crc32_options()
    torch.serialization.set_crc32_options(True)
    try:
        yield
    finally:
        torch.serialization.set_crc32_options(old)


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` with torch.save to a temporary file in the same folder, then rename it over ``path``:
    a crash mid-write leaves the previous file intact."""
    with _crc32_on():
        return atomic_write(path, lambda f: torch.save(payload, f), binary=True)


def checkpoint_problem(path: str | Path) -> str | None:
    """Why the file ``path`` is not a whole torch.save archive (a phrase), or None if every record's CRC-32 matches.
    Reads the file once; unpickles nothing."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            return "the file is empty (0 bytes)"
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except FileNotFoundError:
        return "the file does not exist"
    except zipfile.BadZipFile:
        return f"it is truncated or not a torch.save file (no zip directory at its end; {size} bytes)"
    except Exception as e:  # a damaged header: zipfile raises what the bytes lead it to
        return f"it is damaged ({_one_line(e)})"
    if bad is not None:
        return f"it is damaged: its record {bad!r} fails its CRC-32 check"
    return None


def _one_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:300]


def _load_file(path: Path, map_location, require: Iterable[str]) -> dict:
    why = checkpoint_problem(path)
    if why is not None:
        raise CheckpointError(path, why)
    try:
        # our own files: they hold RNG states and config dicts, not only tensors
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # whole archive, bad contents (a pickle of a class that is gone, ...)
        raise CheckpointError(path, f"it does not load ({_one_line(e)})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(path, f"it holds a {type(payload).__name__}, not a training checkpoint's dict")
    missing = [k for k in require if k not in payload]
    if missing:
        raise CheckpointError(path, f"it is not a training checkpoint (no {', '.join(map(repr, missing))})")
    return payload


def find_checkpoints(folder: str | Path) -> list[Path]:
    """The checkpoint files of the run folder ``folder``, newest first: ``checkpoint.pt``, then the older ones by
    step. Whether they are good is not checked here."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    older = sorted(((int(m[1]), p) for p in folder.iterdir() if (m := _OLDER.match(p.name)) and p.is_file()),
                   reverse=True)  # fmt: skip
    newest = [folder / CHECKPOINT] if (folder / CHECKPOINT).is_file() else []
    return newest + [p for _, p in older]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def read_checkpoint(path: str | Path, map_location="cpu", *, require: Iterable[str] = MODEL_KEYS,
                    note: Callable[[str], None] | None = _stderr) -> tuple[Path, dict]:  # fmt: skip
    """The checkpoint at ``path`` as (file, payload): a file is read as it is; a run folder gives its newest good
    checkpoint, each bad one before it reported through ``note`` by path and why.

    Raises:
        FileNotFoundError: no such file, or a folder with no checkpoint.
        CheckpointError (a ValueError): the file is bad, or every checkpoint of the folder is (naming them).
    """
    path = Path(path)
    require = tuple(require)
    if not path.is_dir():
        if not path.exists():
            raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
        return path, _load_file(path, map_location, require)
    found = find_checkpoints(path)
    if not found:
        raise FileNotFoundError(f"no checkpoint in {str(path)!r} (no {CHECKPOINT})")
    bad = []
    for f in found:
        try:
            return f, _load_file(f, map_location, require)
        except CheckpointError as e:
            bad.append(e)
            if note is not None:
                note(f"{e}; trying the one before it" if f != found[-1] else str(e))
    raise CheckpointError(path, "no good checkpoint in it (" + "; ".join(f"{e.path.name}: {e.why}" for e in bad) + ")")


def load_checkpoint(path: str | Path, map_location="cpu", *, require: Iterable[str] = (),
                    note: Callable[[str], None] | None = _stderr) -> dict:  # fmt: skip
    """The payload of a :func:`save_checkpoint` file, or of the newest good checkpoint in the run folder ``path``
    (see :func:`read_checkpoint`)."""
    return read_checkpoint(path, map_location, require=require, note=note)[1]


def remove_checkpoints(folder: str | Path) -> None:
    """Delete every checkpoint of the run folder ``folder`` (the newest, the older ones, partial writes)."""
    for p in [*find_checkpoints(folder), *_partials(folder)]:
        p.unlink(missing_ok=True)


def _partials(folder: str | Path) -> list[Path]:
    """Temporary files left by a process killed while writing a checkpoint (statetrack.atomic's names)."""
    folder = Path(folder)
    return sorted(folder.glob("checkpoint*.tmp")) if folder.is_dir() else []


class Checkpointer:
    """Writes a run's checkpoints into its folder and keeps the last ``keep_last`` (see the module docstring).

    ``continue_from(path, step)`` after a resume tells it which file the run continues (the checkpoints of the
    folder newer than it, unusable or from another timeline, go at the next save); a run that did not resume
    from this folder replaces all of the folder's checkpoints with its own, as they come.
    """

    def __init__(self, folder: str | Path, keep_last: int = 2, note: Callable[[str], None] | None = _stderr):
        self.folder, self.keep_last, self.note = Path(folder), max(1, int(keep_last)), note
        self.newest_step: int | None = None  # the step of checkpoint.pt, when it is this run's
        self.keep: set[Path] = set()  # the older files that are this run's (resolved paths)
        self.last_saved: Path | None = None

    def clean_partials(self) -> None:
        """Delete the temporary files of a checkpoint write that a killed process left (at start)."""
        for p in _partials(self.folder):
            if self.note is not None:
                self.note(f"removing the partial checkpoint {p} (a run stopped while writing it)")
            p.unlink(missing_ok=True)

    def continue_from(self, path: str | Path, step: int) -> None:
        path = Path(path).resolve()
        found = [p.resolve() for p in find_checkpoints(self.folder)]
        if path not in found:
            return  # resumed from elsewhere: this folder's files are another run's
        self.newest_step = step if path.name == CHECKPOINT else None  # else checkpoint.pt is bad: replaced
        self.keep = {p for p in found[found.index(path) :] if p.name != CHECKPOINT}

    def save(self, step: int, payload: dict) -> Path:
        """Write the checkpoint of ``step`` as the newest; keep the one it replaces (if this run's) as an older
        file; delete what is beyond ``keep_last``. Returns the newest's path."""
        newest = self.folder / CHECKPOINT
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.newest_step is not None and self.newest_step != step and newest.is_file() and self.keep_last > 1:
            older = self.folder / older_name(self.newest_step)
            _link_or_copy(newest, older)
            self.keep.add(older.resolve())
        save_checkpoint(newest, payload)
        self.newest_step, self.last_saved = step, newest
        older = [p for p in find_checkpoints(self.folder) if p.name != CHECKPOINT]
        mine = [p for p in older if p.resolve() in self.keep]
        for p in [p for p in older if p not in mine] + mine[self.keep_last - 1 :]:
            p.unlink(missing_ok=True)
        self.keep = {p.resolve() for p in mine[: self.keep_last - 1]}
        return newest


def _link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes the same file as ``src`` (a hard link: no copy; a copy where links are not allowed)."""
    tmp = dst.with_name(dst.name + ".link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
