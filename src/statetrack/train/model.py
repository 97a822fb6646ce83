"""The model of an experiment: built from its config under the run's seed, or loaded from a checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from statetrack.models import TokenClassifier

from .checkpoint import load_checkpoint
from .config import ExperimentConfig


def build_model(cfg: ExperimentConfig, task) -> TokenClassifier:
    """The model of ``cfg`` (vocab size from the task when the config leaves it 0), under the run's seed."""
    if cfg.model.vocab_size == 0:
        cfg.model.vocab_size = int(task.vocab_size)
    if cfg.model.vocab_size < task.vocab_size:
        raise ValueError(f"model.vocab_size = {cfg.model.vocab_size} < the task's vocab_size {task.vocab_size}")
    cfg.validate()
    torch.manual_seed(cfg.train.seed)
    return TokenClassifier(cfg.model)


def load_model(path: str | Path, device="cpu") -> tuple[TokenClassifier, ExperimentConfig, int]:
    """A trained model from a checkpoint file or run folder: (model in eval mode, its config, its step)."""
    ck = load_checkpoint(path, map_location=device)
    cfg = ExperimentConfig.from_dict(ck["config"])
    model = TokenClassifier(cfg.model)
    model.load_state_dict(ck["model"])
    return model.to(device).eval(), cfg, int(ck["step"])
