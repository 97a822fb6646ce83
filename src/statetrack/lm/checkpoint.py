"""Sharded, atomic pretraining checkpoints on ``torch.distributed.checkpoint`` (DCP).

Layout under a run's ``checkpoints/``::

    step_00000100/             one complete checkpoint
        .metadata, __0_0.distcp, __1_0.distcp, ...   DCP: model + optimiser, sharded by rank (any world loads it)
        trainer.pt             step, scheduler, config, world size (rank 0's)
        rank_00000.pt, ...     each rank's data-loader position and RNG states
        COMPLETE.json          written last: the step, world size and every file's size
    .step_00000200.partial/    one being written (or left by a crash): never loaded

A checkpoint is written under its ``.partial`` name, marked complete once every rank's files and DCP's
metadata exist, then renamed: a reader sees a whole checkpoint or none. One whose marker is missing, or whose
files differ from it, or which fails to load, is reported by path and the previous good one is used. The last
``keep_last`` are kept. With ``async_save`` the model and optimiser are copied to CPU memory at once and written
by a background thread (DCP's ``async_save``) while training goes on; the marker and rename follow when it ends.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from concurrent.futures import Future
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from statetrack.atomic import atomic_write, atomic_write_json

MARKER = "COMPLETE.json"
TRAINER = "trainer.pt"
PREFIX = "step_"


def rank_file(rank: int) -> str:
    return f"rank_{rank:05d}.pt"


def step_dir(root: Path, step: int) -> Path:
    return Path(root) / f"{PREFIX}{step:08d}"


def partial_dir(root: Path, step: int) -> Path:
    return Path(root) / f".{PREFIX}{step:08d}.partial"


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """The (step, folder) of every finished-looking checkpoint under ``root``, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX) :].isdigit():
            out.append((int(p.name[len(PREFIX) :]), p))
    return sorted(out, reverse=True)


def check_checkpoint(path: str | Path) -> str | None:
    """Why the checkpoint folder ``path`` cannot be used (a sentence), or None if its files match its marker."""
    path = Path(path)
    marker = path / MARKER
    if not marker.is_file():
        return f"no {MARKER} (a partial checkpoint: the run stopped while writing it)"
    try:
        info = json.loads(marker.read_text())
        files = dict(info["files"])
    except (ValueError, KeyError, TypeError) as e:
        return f"{MARKER} is unreadable ({e})"
    for name, size in files.items():
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != size:
            return f"{name} has {f.stat().st_size} bytes, the marker says {size} (truncated or overwritten)"
    return None


def _reason(e: BaseException) -> str:
    """One line for a failed load: DCP wraps each rank's error and traceback in its message; keep the error."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception): ", ln)]
    return (errors[-1] if errors else f"{type(e).__name__}: {lines[0] if lines else ''}")[:300]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _torch_save(path: Path, obj) -> None:
    atomic_write(path, lambda f: torch.save(obj, f), binary=True)


class Checkpointer:
    """Saves and restores a run's checkpoints under ``root`` (collective: every rank calls every method).

    Args:
        root: the run's checkpoints folder (shared by all ranks).
        rank, world_size: this process in the job; group: the (CPU-capable) process group DCP coordinates on,
            or None in a process without one.
        keep_last: complete checkpoints kept (older ones are deleted after a save).
        async_save: write the model and optimiser in a background thread (see the module docstring).
        log: where one-line reports go (rank 0 only prints).
    """

    def __init__(self, root, rank: int, world_size: int, group=None, keep_last: int = 2, async_save: bool = False,
                 log=None):  # fmt: skip
        self.root, self.rank, self.world_size, self.group = Path(root), rank, world_size, group
        self.keep_last, self.async_save = max(1, keep_last), async_save
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self.pending: Future | None = None
        self.pending_step: int | None = None
        self.last_saved: Path | None = None

    # -- collectives ---------------------------------------------------------------------------------------------

    def _barrier(self) -> None:
        if self.group is not None and self.world_size > 1:
            dist.barrier(group=self.group)

    def _broadcast(self, obj):
        if self.group is None or self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=dist.get_global_rank(self.group, 0), group=self.group)
        return box[0]

    def _say(self, msg: str) -> None:
        if self.rank == 0:
            self.log(msg)

    # -- saving ------------------------------------------------------------------------------------------------

    def save(self, step: int, model, optimizer, trainer_state: dict, rank_state: dict, blocking: bool = False) -> Path:
        """Write checkpoint ``step``: ``trainer_state`` (rank 0's), ``rank_state`` (each rank's own), and the model
        and optimiser through DCP. Returns the folder it will have once complete. ``blocking``: wait for it."""
        self.wait()
        tmp, final = partial_dir(self.root, step), step_dir(self.root, step)
        if self.rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self._barrier()
        _torch_save(tmp / rank_file(self.rank), rank_state)
        if self.rank == 0:
            _torch_save(tmp / TRAINER, {**trainer_state, "step": step, "world_size": self.world_size})
        msd, osd = get_state_dict(model, optimizer)
        state = {"model": msd, "optim": osd}
        if self.async_save and not blocking:
            fut = dcp.async_save(state, checkpoint_id=str(tmp), process_group=self.group, no_dist=self.group is None)
            if not isinstance(fut, Future):  # a staging/upload pair: the upload is what completes it
                fut = fut.upload_completion
            if self.rank == 0:  # done once rank 0 has marked and renamed it, in the writer thread
                done: Future = Future()
                fut.add_done_callback(lambda f: self._finish_async(f, step, done))
                fut = done
            self.pending, self.pending_step = fut, step
        else:
            dcp.save(state, checkpoint_id=str(tmp), process_group=self.group, no_dist=self.group is None)
            if self.rank == 0:
                self._finalize(step)
            self._barrier()
        self.last_saved = final
        return final

    def _finish_async(self, fut: Future, step: int, done: Future) -> None:
        try:
            fut.result()
            self._finalize(step)
            done.set_result(None)
        except BaseException as e:  # raised by wait() in the main thread
            done.set_exception(e)

    def _finalize(self, step: int) -> None:
        """Rank 0, once DCP's metadata is written (so every rank's files are): marker, rename, prune."""
        tmp, final = partial_dir(self.root, step), step_dir(self.root, step)
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file() and p.name != MARKER}
        atomic_write_json(tmp / MARKER, {"step": step, "world_size": self.world_size, "files": files,
                                         "time": time.strftime("%Y-%m-%dT%H:%M:%S")})  # fmt: skip
        _fsync_dir(tmp)
        if final.exists():  # an older timeline's checkpoint of this step (a resume that fell back past it)
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(self.root)
        for _, old in list_checkpoints(self.root)[self.keep_last :]:
            shutil.rmtree(old, ignore_errors=True)

    def wait(self) -> None:
        """Finish a pending background save (all ranks); raise what went wrong in it."""
        if self.pending is None:
            return
        fut, self.pending = self.pending, None
        err = None
        try:
            fut.result()
        except BaseException as e:  # re-raised below, after the ranks meet
            err = e
        self._barrier()  # rank 0 has renamed it before any rank goes on
        if err is not None:
            raise RuntimeError(f"checkpoint at step {self.pending_step} failed: {err}") from err

    def drain(self) -> None:
        """Let a pending background save finish in this process, without meeting the other ranks (after an error,
        when they may be gone); what goes wrong in it is dropped, as the run is failing anyway."""
        if self.pending is not None:
            fut, self.pending = self.pending, None
            try:
                fut.result()
            except BaseException:  # the error that stops the run is the one to report
                pass

    def clean_partials(self) -> None:
        """Rank 0: delete ``.partial`` folders left by a crashed run (at start, before anything is written)."""
        if self.rank == 0 and self.root.is_dir():
            for p in self.root.iterdir():
                if p.is_dir() and p.name.startswith(f".{PREFIX}") and p.name.endswith(".partial"):
                    self.log(f"removing the partial checkpoint {p} (the run stopped while writing it)")
                    shutil.rmtree(p, ignore_errors=True)

    # -- loading -----------------------------------------------------------------------------------------------

    def load_latest(self, model, optimizer, path: str | Path | None = None):
        """Load the newest good checkpoint (or the one at ``path``) into ``model`` and ``optimizer``.

        Returns (folder, trainer_state, rank_state or None) or None when there is none. ``rank_state`` is None when
        the checkpoint was written by another number of ranks (its model and optimiser are resharded; the
        per-rank data positions do not carry over). A bad checkpoint is reported with its path and skipped."""
        if path is not None:
            candidates = [(None, Path(path))]
        else:
            candidates = list_checkpoints(self.root)
        for _, folder in candidates:
            why = check_checkpoint(folder) if self.rank == 0 else None
            why = self._broadcast(why)
            if why is None:
                try:
                    return self._load(folder, model, optimizer)
                except (Exception, CheckpointException) as e:  # any failure to read it makes it unusable
                    why = f"it does not load ({_reason(e)})"
            msg = f"checkpoint {folder} is unusable: {why}"
            if path is not None:
                raise ValueError(msg)
            self._say(msg + "; trying the one before it")
        return None

    def _load(self, folder: Path, model, optimizer):
        trainer_state = torch.load(folder / TRAINER, map_location="cpu", weights_only=False)
        msd, osd = get_state_dict(model, optimizer)
        state = {"model": msd, "optim": osd}
        dcp.load(state, checkpoint_id=str(folder), process_group=self.group, no_dist=self.group is None)
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"],
                       options=StateDictOptions(strict=True))  # fmt: skip
        rank_state = None
        if int(trainer_state["world_size"]) == self.world_size:
            rank_state = torch.load(folder / rank_file(self.rank), map_location="cpu", weights_only=False)
        return folder, trainer_state, rank_state
