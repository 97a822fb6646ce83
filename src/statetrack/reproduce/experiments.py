"""The runs of each reproduced table and figure: models, tasks and training settings (paper.md 5.1.2, 5.2).

A :class:`RunSpec` is one training run: labels for the tables (model, task, lr, seed) and the full
:class:`ExperimentConfig`. Its cache key hashes the config alone (see ``cache.config_key``), so the same run
shared by two experiments (Table 3 and Table 5) is trained once.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass

from statetrack.models import ModelConfig
from statetrack.train import ExperimentConfig, TrainConfig

from .budgets import Budget
from .cache import config_key
from .paper_numbers import TABLE3_COLUMNS

EXPERIMENTS = ("table3", "table5", "figure1", "figure4", "figure8")
FIGURE4_TASKS = ("s5-swaps", "s5-3moved", "s5-4tokens", "s5")
FIGURE8_TASKS = ("z60", "z60-2tokens")


@dataclass(frozen=True)
class ModelSpec:
    """A row of a table: ``model`` = ModelConfig fields, ``train`` = TrainConfig fields it changes."""

    label: str
    model: dict
    train: dict


@dataclass
class RunSpec:
    """One training run. ``precision`` ("bf16" or "fp32", resolved from the device) is part of the key."""

    experiment: str
    model_label: str
    task: str
    lr: float
    seed: int
    config: ExperimentConfig
    precision: str = "fp32"

    @property
    def key(self) -> str:
        return config_key(self.config.to_dict(), self.precision)

    @property
    def labels(self) -> dict:
        return {"model": self.model_label, "task": self.task, "lr": self.lr, "seed": self.seed}


# ------------------------------------------------------------------------------------------------- models


def block_mlp_ratio(mixer: str, d_model: int) -> float:
    """``ModelConfig.mlp_ratio`` that gives each model the blocks of the authors' code (our SwiGLU hidden size
    is round8(2/3 * ratio * d_model); 0 = no MLP). The paper does not describe blocks; the code does:

    - Mamba: ``x + mamba(norm(x))``, no MLP (automl/unlocking_state_tracking ``xlstm/mamba/mamba.py`` builds
      mambapy ``ResidualBlock`` blocks, ``fla/models/mamba_py/mamba.py``: ``output = self.mixer(self.norm(x)) + x``).
    - mLSTM: no feed-forward (xLSTM ``blocks/mlstm/block.py``: ``xLSTMBlockConfig(..., feedforward=None)``;
      the mLSTM layer has its own up-projection).
    - sLSTM: a gated feed-forward of ceil(1.3 d / 64) * 64 hidden units (xLSTM ``blocks/slstm/block.py``,
      ``components/feedforward.py``: ``proj_factor=1.3``, GeLU gate; ours gates with SiLU, same size).
    - DeltaNet: fla's ``DeltaNetMLP``, SwiGLU with hidden 256 * ceil(int(2/3 * 4 d) / 256) (512 at d = 128).
    - Transformer, and the other mixers: not in the authors' code; a SwiGLU MLP of ratio 4 (docs/reproduce.md).
    """
    if mixer in ("mamba", "mlstm"):
        return 0.0
    if mixer == "slstm":
        return 3 * (math.ceil(1.3 * d_model / 64) * 64) / (2 * d_model)
    if mixer == "deltanet":
        return 3 * (256 * math.ceil(int(d_model * 4 * 2 / 3) / 256)) / (2 * d_model)
    return 4.0


def _with_blocks(model: dict) -> dict:
    return {**model, "mlp_ratio": block_mlp_ratio(model["mixer"], model["d_model"])}


def table3_models(task: str) -> list[ModelSpec]:
    """The 7 rows of Table 3 for one task (paper.md 5.1.2).

    Parity: 2 blocks, width 128, 4 heads (xLSTM, DeltaNet, Transformer); no clipping. Modular arithmetic:
    3 blocks, clipping 1.0 for Transformer, Mamba and DeltaNet; mLSTM/sLSTM width 64 with 1 head. mLSTM trains
    with batch 512 (the paper's out-of-memory workaround). Mamba and DeltaNet: short conv of kernel 4.
    Mamba: d_state 16, expand 2 (the repository's defaults; the paper does not say). Blocks as the authors'
    code has them (:func:`block_mlp_ratio`): no MLP for Mamba and mLSTM.
    """
    parity = task == "parity"
    layers, clip = (2, 0.0) if parity else (3, 1.0)
    xl = {"d_model": 128, "n_heads": 4} if parity else {"d_model": 64, "n_heads": 1}
    base = {"d_model": 128, "n_layers": layers}
    mamba = _with_blocks({**base, "mixer": "mamba", "d_state": 16, "expand": 2, "conv_size": 4})
    delta = _with_blocks({**base, "mixer": "deltanet", "n_heads": 4, "use_short_conv": True, "conv_size": 4})
    return [
        ModelSpec("Transformer", _with_blocks({**base, "mixer": "transformer", "n_heads": 4}), {"grad_clip": clip}),
        ModelSpec("mLSTM", _with_blocks({**base, **xl, "mixer": "mlstm"}), {"batch_size": 512}),
        ModelSpec("sLSTM", _with_blocks({**base, **xl, "mixer": "slstm"}), {}),
        ModelSpec("Mamba [0,1]", {**mamba, "min_eigenvalue": 0.0}, {"grad_clip": clip}),
        ModelSpec("Mamba [-1,1]", {**mamba, "min_eigenvalue": -1.0}, {"grad_clip": clip}),
        ModelSpec("DeltaNet [0,1]", {**delta, "min_eigenvalue": 0.0}, {"grad_clip": clip}),
        ModelSpec("DeltaNet [-1,1]", {**delta, "min_eigenvalue": -1.0}, {"grad_clip": clip}),
    ]


def figure1_models() -> list[ModelSpec]:
    """The diagonal LRNN of Figure 1 (configs/parity_diagonal_rnn.yaml; the paper gives no sizes), [0,1] and
    [-1,1]. Training as the repository's parity yaml: batch 256, no weight decay."""
    m = {"mixer": "diagonal_rnn", "d_model": 16, "n_layers": 1, "mlp_ratio": 0.0, "d_state": 16, "gate_scale": 10.0}
    t = {"batch_size": 256, "weight_decay": 0.0}
    return [ModelSpec("[0,1]", {**m, "min_eigenvalue": 0.0}, t), ModelSpec("[-1,1]", {**m, "min_eigenvalue": -1.0}, t)]


def group_models() -> list[ModelSpec]:
    """Figures 4, 7 and 8 (paper.md 5.2): width 128; DeltaNet 4 heads, no short conv, 1 or 5 layers; Mamba 5
    layers with its defaults; the "full matrix simple" baseline, 1 layer, n = 32. Blocks as in Table 3 (fla's
    DeltaNet MLP; Mamba without MLP)."""
    d = _with_blocks({"mixer": "deltanet", "d_model": 128, "n_heads": 4, "use_short_conv": False})
    mb = _with_blocks({"mixer": "mamba", "d_model": 128, "n_layers": 5, "d_state": 16, "expand": 2})
    out = []
    for L in (1, 5):
        for mev, rng in ((0.0, "[0,1]"), (-1.0, "[-1,1]")):
            out.append(ModelSpec(f"DeltaNet {L}L {rng}", {**d, "n_layers": L, "min_eigenvalue": mev}, {}))
    for mev, rng in ((0.0, "[0,1]"), (-1.0, "[-1,1]")):
        out.append(ModelSpec(f"Mamba 5L {rng}", {**mb, "min_eigenvalue": mev}, {}))
    full = {"mixer": "full_matrix_rnn", "d_model": 128, "n_layers": 1, "mlp_ratio": 0.0, "full_matrix_n": 32}
    out.append(ModelSpec("Full matrix 1L (n=32)", full, {}))
    return out


def _tiny(model: dict) -> dict:
    """The smoke budget's version of a model: width 16, at most 2 layers (so 1L and 5L stay distinct runs),
    small states; same mixer and eigenvalue range."""
    m = dict(model, d_model=16, n_layers=min(model.get("n_layers", 2), 2), d_state=4, full_matrix_n=4)
    if m.get("n_heads", 1) > 1:
        m["n_heads"] = 2
    return m


# --------------------------------------------------------------------------------------------- run specs

_CHOMSKY_TRAIN = {"min_lr": 1e-6, "warmup_frac": 0.1, "weight_decay": 0.1, "grad_clip": 0.0, "batch_size": 1024}
_GROUP_TRAIN = {"min_lr": 1e-6, "warmup_frac": 0.01, "weight_decay": 0.01, "grad_clip": 1.0, "batch_size": 512}


def experiment_plan(experiment: str) -> list[tuple[str, list[ModelSpec], dict]]:
    """(task, models, base train settings) of each task of ``experiment``, in table order."""
    if experiment in ("table3", "table5"):
        return [(t, table3_models(t), _CHOMSKY_TRAIN) for t in TABLE3_COLUMNS]
    if experiment == "figure1":
        return [("parity", figure1_models(), {**_CHOMSKY_TRAIN, "batch_size": 256})]
    if experiment == "figure4":
        return [(t, group_models(), _GROUP_TRAIN) for t in FIGURE4_TASKS]
    if experiment == "figure8":
        return [(t, group_models(), _GROUP_TRAIN) for t in FIGURE8_TASKS]
    raise ValueError(f"unknown experiment {experiment!r}; choose one of {list(EXPERIMENTS)}")


def build_runs(experiment: str, budget: Budget, *, device_type: str = "cpu") -> list[RunSpec]:
    """Every run of ``experiment`` at ``budget``: tasks x models x lrs x seeds, in table order.

    ``device_type`` ("cpu" or "cuda") fixes the precision that is part of each key: bf16 autocast on CUDA
    (as the authors' code), fp32 on a CPU.
    """
    runs = []
    for task, models, base in experiment_plan(experiment):
        for ms in models:
            for lr in budget.lrs:
                for seed in budget.seeds:
                    train = {**base, **ms.train, "task": task, "lr": lr, "seed": seed, "steps": budget.steps,
                             "eval_size": budget.eval_size, "eval_every": budget.eval_every,
                             "ckpt_every": budget.ckpt_every, "progress": False, "log_every": 100}  # fmt: skip
                    if budget.batch_size:
                        train["batch_size"] = budget.batch_size
                    task_args = {"test_size_small": budget.test_size_small, "train_set_size": budget.train_set_size}
                    task_args = {k: v for k, v in task_args.items() if v}  # unset ones stay out of the key
                    if task_args:
                        train["task_args"] = task_args
                    model = _tiny(ms.model) if budget.tiny else dict(ms.model)
                    cfg = ExperimentConfig(
                        name=f"{experiment} {task} {ms.label} lr={lr:g} seed={seed}",
                        model=ModelConfig.from_dict(copy.deepcopy(model)),
                        train=TrainConfig(**copy.deepcopy(train)),
                    )
                    precision = "bf16" if device_type == "cuda" else "fp32"
                    runs.append(RunSpec(experiment, ms.label, task, lr, seed, cfg, precision))
    return runs


# ----------------------------------------------------------------------------------------------- slices

ONLY_KEYS = ("model", "task", "lr", "seed")


def parse_only(text: str | None, runs: list[RunSpec]) -> dict[str, list] | None:
    """``--only`` "model=A|B,task=x|y[,lr=..][,seed=..]" -> {key: chosen values}, each checked against the
    plan's values (a bad one lists the choices). Commas inside a value ("DeltaNet [-1,1]") are kept: a new
    key starts only at ``,<key>=``. Model and task names are compared case- and space-insensitively."""
    if not text or not text.strip():
        return None
    parts = [p for p in re.split(rf",(?=\s*(?:{'|'.join(ONLY_KEYS)})\s*=)", text) if p.strip()]
    choices = {"model": list(dict.fromkeys(r.model_label for r in runs)),
               "task": list(dict.fromkeys(r.task for r in runs)),
               "lr": sorted({r.lr for r in runs}, reverse=True), "seed": sorted({r.seed for r in runs})}  # fmt: skip
    out: dict[str, list] = {}
    for part in parts:
        key, eq, values = part.partition("=")
        key = key.strip().lower()
        if not eq or key not in ONLY_KEYS:
            raise ValueError(f"--only: expected KEY=VALUE[|VALUE...] with KEY one of {list(ONLY_KEYS)}, got {part!r}")
        if key in out:
            raise ValueError(f"--only: {key} given twice")
        picked = []
        for v in (x.strip() for x in values.split("|")):
            match = _match_choice(key, v, choices[key])
            if match is None:
                shown = ", ".join(f"{c:g}" if isinstance(c, float) else str(c) for c in choices[key])
                raise ValueError(f"--only: no {key} {v!r} in this experiment; choose from: {shown}")
            if match not in picked:
                picked.append(match)
        out[key] = picked
    return out


def _match_choice(key: str, value: str, choices: list):
    if key in ("lr", "seed"):
        try:
            num = float(value) if key == "lr" else int(value)
        except ValueError:
            return None
        return next((c for c in choices if c == num), None)
    norm = lambda s: re.sub(r"\s+", "", s).lower()  # noqa: E731
    return next((c for c in choices if norm(c) == norm(value)), None)


def select_runs(runs: list[RunSpec], only: dict[str, list] | None) -> list[RunSpec]:
    """The runs of a slice (plan order kept; the keys are those of the full plan)."""
    if not only:
        return runs
    label = {"model": lambda r: r.model_label, "task": lambda r: r.task, "lr": lambda r: r.lr,
             "seed": lambda r: r.seed}  # fmt: skip
    return [r for r in runs if all(label[k](r) in vals for k, vals in only.items())]


def only_text(only: dict[str, list] | None) -> str:
    """A slice as ``--only`` text, normalized (the recorded command and report headers)."""
    if not only:
        return ""
    fmt = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
    return ",".join(f"{k}={'|'.join(fmt(v) for v in only[k])}" for k in ONLY_KEYS if k in only)


def only_slug(only: dict[str, list] | None) -> str:
    """A folder-name form of a slice: "DeltaNet [-1,1]" -> "deltanet-11", "Mamba [0,1]" -> "mamba-01"."""

    def one(v) -> str:
        s = f"{v:g}" if isinstance(v, float) else str(v)
        s = re.sub(r"\[\s*-1\s*,\s*1\s*\]", "-11", s.lower())
        s = re.sub(r"\[\s*0\s*,\s*1\s*\]", "-01", s)
        return re.sub(r"[^a-z0-9.+-]+", "", s.replace(" ", "")) or "x"

    return "_".join(f"{k}-{'+'.join(one(v) for v in only[k])}" for k in ONLY_KEYS if only and k in only)
