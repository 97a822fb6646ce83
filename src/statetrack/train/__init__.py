"""Training and evaluation of token classifiers on the state-tracking tasks.

- :func:`load_config` / :class:`ExperimentConfig`: experiment files under configs/ plus dot-list overrides.
- :func:`train`: the loop (AdamW, warm-up + cosine, fresh samples, evaluation, checkpoints, exact resume; a
  SIGINT / SIGTERM saves a checkpoint and raises :class:`TrainingStopped`).
- :func:`read_checkpoint` / :func:`load_checkpoint`: a checkpoint file, or a run folder's newest good one
  (a damaged file raises :class:`CheckpointError` naming it and why).
- :func:`evaluate`: accuracy, scaled accuracy, per length and prefix accuracy.
- :func:`build_model` / :func:`load_model`: the model of a config, or of a checkpoint.
- the pieces of a training step, for scripts that build their own loop: :func:`masked_cross_entropy`,
  :func:`param_groups`, :func:`make_step` / :func:`build_step` / :class:`GraphedStep` (eager or CUDA-graphed),
  :func:`pad_batch`, :func:`fixed_width`, :func:`autocast_factory`.
"""

from .checkpoint import (
    CHECKPOINT,
    CheckpointError,
    find_checkpoints,
    load_checkpoint,
    read_checkpoint,
    remove_checkpoints,
    save_checkpoint,
)
from .config import ExperimentConfig, TrainConfig, config_dir, dump_config, load_config, sample_lengths
from .device import resolve_device
from .evaluate import EvalResult, eval_batch, evaluate, scaled
from .graphed import GraphedStep, autocast_factory, build_step, fixed_width, make_step, pad_batch
from .loop import TrainResult, train
from .loss import masked_cross_entropy
from .metrics_log import METRICS
from .model import build_model, load_model
from .optim import make_optimizer, param_groups
from .prefetch import Prefetcher, batch_generator
from .schedule import make_scheduler, warmup_cosine
from .signals import TrainingStopped

__all__ = ["CHECKPOINT", "METRICS", "CheckpointError", "EvalResult", "ExperimentConfig", "GraphedStep", "Prefetcher",
           "TrainConfig", "TrainResult", "TrainingStopped", "autocast_factory", "batch_generator", "build_model",
           "build_step", "config_dir", "dump_config", "eval_batch", "evaluate", "find_checkpoints", "fixed_width",
           "load_checkpoint", "load_config", "load_model", "make_optimizer", "make_scheduler", "make_step",
           "masked_cross_entropy", "pad_batch", "param_groups", "read_checkpoint", "remove_checkpoints",
           "resolve_device", "sample_lengths", "save_checkpoint", "scaled", "train", "warmup_cosine"]  # fmt: skip
