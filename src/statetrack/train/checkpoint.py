"""Atomic checkpoints: everything needed to continue a run exactly (model, optimiser, scheduler, RNGs, step)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from statetrack.atomic import atomic_write

CHECKPOINT = "checkpoint.pt"  # its file name in a run folder


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


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` with torch.save to a temporary file in the same folder, then rename it over ``path``:
    a crash mid-write leaves the previous checkpoint intact."""
    return atomic_write(path, lambda f: torch.save(payload, f), binary=True)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """The payload of a :func:`save_checkpoint` file, or of the checkpoint in the run folder ``path``."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    # our own files: they hold RNG states and config dicts, not only tensors
    return torch.load(path, map_location=map_location, weights_only=False)
