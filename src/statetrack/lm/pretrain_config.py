"""Pretraining configuration: a causal LM (``model:``, the fields of StateTrackConfig) and a run (``train:``).

Files under ``configs/lm/`` hold ``name``, ``model: {...}`` and ``train: {...}``; overrides are OmegaConf
dot-lists (``train.steps=100 model.min_eigenvalue=0``), as for ``statetrack train``. ``train`` is checked against
:class:`PretrainSettings` (unknown keys and wrong types fail at once); ``model`` by StateTrackConfig itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from statetrack.train.config import RunConfig, dump_yaml, merge_structured, read_parts
from statetrack.train.config import resolve_config_path as resolve_train_config_path


@dataclass
class PretrainSettings:
    """One pretraining run.

    Attributes:
        data: a folder of token shards (``statetrack data prepare``), or ``builtin:NAME`` for a corpus that ships
            with the installed packages (prepared once with ``tokenizer`` into ``data_cache``).
        tokenizer: the tokenizer a builtin corpus is prepared with (a name of statetrack.lm.tokenizer or a path).
        data_cache: where builtin corpora are prepared ("" = ``~/.cache/statetrack/data``); holdout: the share of
            a builtin corpus's documents held out for evaluation (its validation split).
        steps: optimiser steps (the schedule's length). batch_size: sequences per rank and micro-step.
        seq_len: tokens per sequence. grad_accum: micro-steps per optimiser step, so a step sees
            batch_size x grad_accum x world size sequences.
        lr, min_lr, warmup_steps: linear warm-up over warmup_steps, then cosine to min_lr at the last step.
        weight_decay: AdamW's, on the matrices only (linear and embedding weights; not norms, biases, convolution
            kernels or the decay rates). beta1, beta2, eps: AdamW's. grad_clip: max global gradient norm, 0 = none.
        seed: the model's initialisation and the data order.
        ckpt_every: steps between checkpoints (0 = at the end only; a SIGINT/SIGTERM saves one too);
            keep_last: checkpoints kept. log_every: steps between metric lines (every step's loss is kept).
        eval_every: steps between held-out losses (0 = at the end only); eval_batches: batches per rank for it.
        out_dir: the run folder ("" = runs/<name>).
        device: "auto" | "cpu" | "cuda" (each process takes cuda:LOCAL_RANK).
        amp: "auto" (bf16 on CUDA, fp32 on the CPU) | "bf16" | "none".
        fsdp: "auto" (on with more than one process) | "on" | "off" (off needs one process).
        compile: torch.compile each block. activation_checkpointing: recompute each block in the backward.
        async_checkpoint: "auto" (on for CUDA) | "on" | "off": write checkpoints in a background thread.
        threads: torch CPU threads per process (0 = torch's default). progress: the progress bar (rank 0).
        value_checks: "auto" | "on" | "first_step" | "off": when the ops check their inputs' value ranges (a host
            sync per op), as for ``statetrack train`` (``statetrack.train.device.value_check_phases``; "auto": on
            CUDA for the process's first step only).
    """

    data: str = "builtin:code"
    tokenizer: str = "mistral-v1"
    data_cache: str = ""
    holdout: float = 0.05
    steps: int = 1000
    batch_size: int = 8
    seq_len: int = 2048
    grad_accum: int = 1
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 250
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    seed: int = 0
    ckpt_every: int = 1000
    keep_last: int = 2
    log_every: int = 10
    eval_every: int = 0
    eval_batches: int = 8
    out_dir: str = ""
    device: str = "auto"
    amp: str = "auto"
    fsdp: str = "auto"
    compile: bool = False
    activation_checkpointing: bool = False
    async_checkpoint: str = "auto"
    threads: int = 0
    progress: bool = True
    value_checks: str = "auto"

    def validate(self) -> PretrainSettings:
        def bad(name, why):
            raise ValueError(f"train.{name} {why}, got {getattr(self, name)!r}")

        for name in ("steps", "batch_size", "grad_accum", "keep_last", "log_every", "eval_batches"):
            if getattr(self, name) < 1:
                bad(name, "must be >= 1")
        if self.seq_len < 2:
            bad("seq_len", "must be >= 2 (a token and the next one)")
        for name in ("lr", "min_lr", "warmup_steps", "weight_decay", "grad_clip", "ckpt_every", "eval_every",
                     "threads", "eps"):  # fmt: skip
            if getattr(self, name) < 0:
                bad(name, "must be >= 0")
        if self.min_lr > self.lr:
            bad("min_lr", f"must be <= lr = {self.lr}")
        if self.warmup_steps > self.steps:
            bad("warmup_steps", f"must be <= steps = {self.steps}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                bad(name, "must lie in [0, 1)")
        for name, choices in _CHOICES.items():
            v = _YAML_BOOLS.get(str(getattr(self, name)), getattr(self, name))
            setattr(self, name, v)
            if v not in choices:
                bad(name, "must be one of " + ", ".join(repr(c) for c in choices))
        if not 0.0 < self.holdout < 1.0:
            bad("holdout", "must lie in (0, 1)")
        if not str(self.data).strip():
            bad("data", "must name a token-shard folder or builtin:NAME")
        return self


_CHOICES = {"amp": ("auto", "bf16", "none"), "fsdp": ("auto", "on", "off"), "async_checkpoint": ("auto", "on", "off"),
            "value_checks": ("auto", "on", "first_step", "off")}  # fmt: skip
_YAML_BOOLS = {"True": "on", "true": "on", "False": "off", "false": "off"}


@dataclass
class PretrainConfig(RunConfig):
    """A pretraining experiment: its name, the model (StateTrackConfig keyword arguments) and the run."""

    name: str = "lm"
    model: dict[str, Any] = field(default_factory=dict)
    train: PretrainSettings = field(default_factory=PretrainSettings)

    def model_config(self):
        """The StateTrackConfig of ``model`` (its own checks name a bad field)."""
        from statetrack.models import StateTrackConfig

        try:
            return StateTrackConfig(**self.model)
        except TypeError as e:
            raise ValueError(f"model: {e}") from None
        except ValueError as e:
            raise ValueError(f"model: {e}") from None

    def validate(self) -> PretrainConfig:
        self.train.validate()
        cfg = self.model_config()
        limit = getattr(cfg, "max_position_embeddings", None)
        if limit is not None and self.train.seq_len > int(limit):
            raise ValueError(
                f"train.seq_len = {self.train.seq_len} is above model.max_position_embeddings = {limit}; "
                "lower train.seq_len or raise the model's limit"
            )
        return self

    def to_dict(self) -> dict:
        return {"name": self.name, "model": _plain(self.model), "train": dataclasses.asdict(self.train)}


def _plain(x):
    if OmegaConf.is_config(x):
        return OmegaConf.to_container(x, resolve=True)
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x


def _merge(parts) -> PretrainConfig:
    obj = merge_structured(PretrainConfig, parts)
    obj.model = _plain(obj.model)
    return obj


PretrainConfig.merge = staticmethod(_merge)


def resolve_config_path(name: str | Path) -> Path:
    """``name`` if it is a file, else the packaged config of that name under configs/lm (``tiny``,
    ``configs/lm/tiny.yaml``): :func:`statetrack.train.config.resolve_config_path`."""
    return resolve_train_config_path(name, "lm")


def load_pretrain_config(path: str | Path | None = None, overrides=()) -> PretrainConfig:
    """Read a YAML pretraining file (a path or a name under configs/lm/; None: the defaults) and apply dot-list
    overrides. Values are checked by :meth:`PretrainConfig.validate` when the run starts."""
    return _merge(read_parts(None if path is None else resolve_config_path(path), overrides, "train.steps=100"))


def dump_pretrain_config(cfg: PretrainConfig) -> str:
    """The config as YAML text (the run folder's config.yaml)."""
    return dump_yaml(cfg.to_dict())
