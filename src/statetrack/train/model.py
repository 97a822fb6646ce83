"""The model of an experiment: built from its config under the run's seed, or loaded from a checkpoint."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from statetrack.models import TokenClassifier

from .checkpoint import MODEL_KEYS, CheckpointError, _stderr, read_checkpoint
from .config import ExperimentConfig


def build_model(cfg: ExperimentConfig, task) -> TokenClassifier:
    """The model of ``cfg`` (vocab size from the task when the config leaves it 0), under the run's seed."""
    if cfg.model.vocab_size == 0:
        cfg.model.vocab_size = int(task.vocab_size)
    if cfg.model.vocab_size < task.vocab_size:
        raise ValueError(f"model.vocab_size = {cfg.model.vocab_size} < the task's vocab_size {task.vocab_size}")
    cfg.validate()
    torch.manual_seed(cfg.train.seed)  # the CPU generator (the weights are drawn on the CPU) and every GPU's
    random.seed(cfg.train.seed)  # nothing of statetrack draws from these two; code added to a run might
    np.random.seed(cfg.train.seed % 2**32)  # noqa: NPY002
    return TokenClassifier(cfg.model)


def load_model(path: str | Path, device="cpu", note=_stderr) -> tuple[TokenClassifier, ExperimentConfig, int]:
    """A trained model from a checkpoint file or run folder (its newest good checkpoint; a bad one skipped is
    reported through ``note``): (model in eval mode, its config, its step). A bad file raises CheckpointError."""
    file, ck = read_checkpoint(path, map_location=device, require=MODEL_KEYS, note=note)
    try:
        cfg = ExperimentConfig.from_dict(ck["config"])
        model = TokenClassifier(cfg.model)
        model.load_state_dict(ck["model"])
    except (ValueError, RuntimeError, KeyError, TypeError) as e:
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
        raise CheckpointError(file, f"its model does not build from its config ({type(e).__name__}: {first})") from None
    return model.to(device).eval(), cfg, int(ck["step"])
