"""Experiment configuration: a ModelConfig and a TrainConfig, read from YAML with command-line overrides.

Files under ``configs/`` hold ``name``, ``model: {...}`` and ``train: {...}``; overrides are OmegaConf dot-lists
(``model.min_eigenvalue=0 train.steps=500``). Both are checked against the dataclasses (unknown keys and wrong
types fail at once), then :meth:`ExperimentConfig.validate` checks the values.

The shipped experiment files live inside the package (``statetrack/configs``, :func:`config_dir`; the repository's
top-level ``configs`` links to it), so a bare name (``parity_deltanet``) or a ``configs/...`` path works from any
folder once statetrack is installed (:func:`resolve_config_path`).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from statetrack.models import ModelConfig, upgrade_model_dict


@dataclass
class TrainConfig:
    """Optimisation, data, evaluation and bookkeeping of one training run.

    Attributes:
        task: a name of statetrack.tasks (``list_tasks()``); task_args: keyword arguments for ``get_task``.
        steps: optimiser steps (the schedule's length); batch_size: sequences per step, fresh each step.
        train_lengths: [lo, hi] or [L]; empty = the task's own training lengths.
        lr, min_lr, warmup_frac (or warmup_steps >= 0, which wins): linear warm-up, then cosine to min_lr.
        weight_decay, beta1, beta2: AdamW (decay on matrices and embeddings only, not on norms and biases).
        grad_clip: max global gradient norm; 0 = no clipping.
        seed: model initialisation and the data stream (batch ``s`` comes from a generator seeded by seed and s).
        eval_every: steps between evaluations (0 = only at the end); eval_size: the task's fixed test set
            ("small" or "paper"); eval_samples > 0 samples that many sequences instead, with eval_lengths
            (empty = the task's test lengths) from a fixed seed; eval_batch_size: sequences per eval forward.
        log_every: steps between metric lines; ckpt_every: steps between checkpoints (0 = only at the end; a
            SIGINT / SIGTERM saves one too); keep_last: checkpoints kept (checkpoint.pt, the newest, and the
            keep_last - 1 before it, checkpoint.step_<N>.pt: a damaged newest one falls back to them).
        out_dir: where metrics.jsonl, config.yaml and the checkpoints go (empty = runs/<name>).
        device: "auto" | "cpu" | "cuda" | "cuda:N"; amp: "auto" (bf16 autocast on CUDA, fp32 on CPU) | "bf16" |
            "none"; compile: torch.compile the model; progress: show a progress bar.
        cuda_graph: "auto" (on for CUDA) | "on" | "off": run each training step as one replayed CUDA graph
            (batches padded to the longest training length; same results as eager), the compiled step with
            compile = true: the fastest way to train small models on a GPU.
        value_checks: "auto" | "on" | "first_step" | "off": when the ops check their inputs' value ranges
            (a host sync per op). "auto": on the CPU always (unless ``STATETRACK_VALUE_CHECKS=0``), on CUDA
            for the first step of the run only; "on" is refused with a CUDA graph (a replay checks nothing).
        prefetch: threads that draw the next batches while the model trains (-1 = 2 on CUDA, 0 on CPU).
        threads: torch CPU threads (0 = torch's default). Small models step faster on one thread: their ops
            are too short to split, and idle OpenMP threads slow everything down on a busy machine.
        deterministic: bitwise the same losses for the same config and seed on the same GPU and software, with
            or without other runs sharing the GPU (:mod:`statetrack.train.determinism`: torch's deterministic
            algorithms, a fixed cuBLAS workspace, no timing-based choices, no eager fallback of a CUDA graph).
            Off by default for ``statetrack train``, on for ``statetrack reproduce``; its cost in
            docs/reproduce.md. On the CPU results also depend on ``threads`` (keep it fixed).
    """

    task: str = "parity"
    task_args: dict[str, Any] = field(default_factory=dict)
    steps: int = 1000
    batch_size: int = 256
    train_lengths: list[int] = field(default_factory=list)
    lr: float = 1e-3
    min_lr: float = 1e-6
    warmup_frac: float = 0.1
    warmup_steps: int = -1
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 0.0
    seed: int = 0
    eval_every: int = 0
    eval_size: str = "small"
    eval_samples: int = 0
    eval_lengths: list[int] = field(default_factory=list)
    eval_batch_size: int = 512
    log_every: int = 50
    ckpt_every: int = 0
    keep_last: int = 2
    out_dir: str = ""
    device: str = "auto"
    amp: str = "auto"
    compile: bool = False
    cuda_graph: str = "auto"
    value_checks: str = "auto"
    progress: bool = True
    prefetch: int = -1
    threads: int = 0
    deterministic: bool = False

    def validate(self) -> TrainConfig:
        def bad(name, why):
            raise ValueError(f"train.{name} {why}, got {getattr(self, name)!r}")

        for name in ("steps", "batch_size", "eval_batch_size", "keep_last"):
            if getattr(self, name) < 1:
                bad(name, "must be >= 1")
        for name in ("lr", "min_lr", "weight_decay", "grad_clip", "eval_every", "log_every", "ckpt_every",
                     "eval_samples", "threads"):  # fmt: skip
            if getattr(self, name) < 0:
                bad(name, "must be >= 0")
        if self.min_lr > self.lr:
            bad("min_lr", f"must be <= lr = {self.lr}")
        if not 0.0 <= self.warmup_frac <= 1.0:
            bad("warmup_frac", "must lie in [0, 1]")
        for name in ("train_lengths", "eval_lengths"):
            v = list(getattr(self, name))
            if len(v) > 2 or any(x < 1 for x in v) or (len(v) == 2 and v[0] > v[1]):
                bad(name, "must be [], [L] or [lo, hi] with 1 <= lo <= hi")
        for name, choices in _CHOICES.items():
            if "on" in choices:  # YAML reads on/off as booleans, which reach a str field as "True"/"False"
                setattr(self, name, _YAML_BOOLS.get(str(getattr(self, name)), getattr(self, name)))
            if getattr(self, name) not in choices:
                bad(name, "must be " + " or ".join(", ".join(repr(c) for c in choices).rsplit(", ", 1)))
        return self

    @property
    def warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps >= 0 else int(round(self.warmup_frac * self.steps))


# the string settings of TrainConfig and their values
_CHOICES = {
    "amp": ("auto", "bf16", "none"),
    "cuda_graph": ("auto", "on", "off"),
    "value_checks": ("auto", "on", "first_step", "off"),
    "eval_size": ("small", "paper"),
}
_YAML_BOOLS = {"True": "on", "true": "on", "False": "off", "false": "off"}


class RunConfig:
    """What the run configs share (dataclasses with ``name`` and ``train.out_dir``): ``from_dict`` through the
    subclass's ``merge(parts)`` and the run folder."""

    @classmethod
    def from_dict(cls, d: dict):
        return cls.merge([OmegaConf.create(d)])

    @property
    def out_dir(self) -> Path:
        """``train.out_dir``, or runs/<name> when it is empty."""
        return Path(self.train.out_dir or f"runs/{self.name}")


@dataclass
class ExperimentConfig(RunConfig):
    """One experiment: a name, the model and the training run."""

    name: str = "run"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> ExperimentConfig:
        self.model.validate()
        self.train.validate()
        return self

    def to_dict(self) -> dict:
        """Nested plain dict; the model's settings with their defaults written out."""
        return {**dataclasses.asdict(self), "model": self.model.to_dict()}


def _upgrade(part):
    """A part with its ``model`` section in today's form (flat model keys into ``model.settings``)."""
    if not (OmegaConf.is_dict(part) and OmegaConf.is_dict(part.get("model"))):
        return part
    plain = OmegaConf.to_container(part, resolve=True)
    plain["model"] = upgrade_model_dict(plain["model"])
    return OmegaConf.create(plain)


def merge_structured(cls, parts):
    """``cls`` (a dataclass of dataclasses) from OmegaConf parts merged in order onto its defaults; unknown keys
    and wrong types raise one ValueError line naming the key."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), *parts))
    except OmegaConfBaseException as e:  # its message: the problem, then key/type lines; keep one line
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        what = [ln for ln in lines if not ln.startswith(("full_key:", "reference_type=", "object_type="))]
        key = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("full_key:")]
        raise ValueError(f"bad configuration{f' ({key[0]})' if key else ''}: {' '.join(what)}") from None


def config_dir(sub: str = "") -> Path:
    """The folder of the experiment files that ship inside the package (``sub="lm"``: the language models')."""
    return Path(str(importlib.resources.files("statetrack").joinpath("configs"))) / sub


def config_names(sub: str = "") -> list[str]:
    """The names of the packaged experiment files in ``config_dir(sub)`` (``parity_deltanet``, ...)."""
    d = config_dir(sub)
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def resolve_config_path(name: str | Path, sub: str = "") -> Path:
    """``name`` if it is a file; else a packaged config: a bare name (``parity_deltanet`` or ``...yaml``) in
    ``config_dir(sub)``, or a relative ``configs/...`` path (the repository's spelling) under :func:`config_dir`.
    A FileNotFoundError lists the packaged names otherwise."""
    p = Path(name)
    if p.is_file():
        return p
    cands = []
    if p.suffix in ("", ".yaml", ".yml") and p.parent == Path("."):
        cands = [config_dir(sub) / p.name, config_dir(sub) / f"{p.name}.yaml"]
    elif not p.is_absolute() and p.parts[0] == "configs":
        cands = [config_dir().joinpath(*p.parts[1:])]
    for c in cands:
        if c.is_file():
            return c
    where = f"configs/{sub}/" if sub else "configs/"
    raise FileNotFoundError(f"config file {str(p)!r} does not exist, nor is it one of the packaged {where} "
                            f"({', '.join(config_names(sub)) or 'none found'})")  # fmt: skip


def read_parts(path: str | Path | None, overrides, example: str = "model.min_eigenvalue=0") -> list:
    """The OmegaConf parts of a run: the YAML file (if any), then the dot-list overrides (``key=value``)."""
    parts = []
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file {str(p)!r} does not exist")
        parts.append(OmegaConf.load(p))
    for o in overrides:
        if "=" not in o:
            raise ValueError(f"override {o!r} must look like key=value, e.g. {example}")
    parts.append(OmegaConf.from_dotlist(list(overrides)))
    return parts


def dump_yaml(d: dict) -> str:
    """A config's plain dict as YAML text (what a run folder's config.yaml holds)."""
    return OmegaConf.to_yaml(OmegaConf.create(d))


def _merge(parts) -> ExperimentConfig:
    obj = merge_structured(ExperimentConfig, [_upgrade(p) for p in parts])
    obj.model.mixer_settings  # noqa: B018 - unknown mixer settings fail at once, like unknown keys
    # OmegaConf hands back its own containers for nested fields; make them plain python
    obj.train.task_args = dict(obj.train.task_args)
    obj.train.train_lengths = list(obj.train.train_lengths)
    obj.train.eval_lengths = list(obj.train.eval_lengths)
    return obj


ExperimentConfig.merge = staticmethod(_merge)


def sample_lengths(v: list[int]) -> int | tuple[int, int] | None:
    """A config's lengths list as the ``lengths`` argument of ``Task.sample``: [L] -> L, [lo, hi] -> (lo, hi),
    [] -> None (the task's own lengths)."""
    return None if not v else (int(v[0]) if len(v) == 1 else (int(v[0]), int(v[1])))


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read a YAML experiment file (a path, or a packaged name such as ``parity_deltanet``: see
    :func:`resolve_config_path`; the defaults when ``path`` is None) and apply dot-list overrides.

    The model's ``vocab_size`` may stay 0 here: the trainer takes it from the task. Values are validated by
    :meth:`ExperimentConfig.validate` when the run starts.
    """
    return _merge(read_parts(None if path is None else resolve_config_path(path), overrides))


def dump_config(cfg: ExperimentConfig) -> str:
    """The config as YAML text (what the run directory's config.yaml holds)."""
    return dump_yaml(cfg.to_dict())
