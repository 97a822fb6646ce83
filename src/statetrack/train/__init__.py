"""Training and evaluation of token classifiers on the state-tracking tasks.

- :func:`load_config` / :class:`ExperimentConfig`: experiment files under configs/ plus dot-list overrides.
- :func:`train`: the loop (AdamW, warm-up + cosine, fresh samples, evaluation, checkpoints, exact resume).
- :func:`evaluate`: accuracy, scaled accuracy, per length and prefix accuracy.
"""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import ExperimentConfig, TrainConfig, dump_config, load_config
from .evaluate import EvalResult, evaluate, scaled
from .loop import TrainResult, build_model, load_model, train
from .schedule import warmup_cosine

__all__ = ["EvalResult", "ExperimentConfig", "TrainConfig", "TrainResult", "build_model", "dump_config",
           "evaluate", "load_checkpoint", "load_config", "load_model", "save_checkpoint", "scaled", "train",
           "warmup_cosine"]  # fmt: skip
