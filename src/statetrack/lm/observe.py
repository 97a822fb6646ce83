"""What a pretraining run shows and leaves behind (rank 0 only): the progress bar, metrics.jsonl, TensorBoard
events, the loss-curve PNG, and the run's provenance (resolved config, versions, git commit) per invocation.

Run folder::

    config.yaml          the resolved config of the latest invocation
    invocations.jsonl    one line per start or resume: time, argv, world size, device, versions, git commit
    metrics.jsonl        {"kind": "train" | "eval", "step": ..., ...} per line (lines after a resumed step dropped)
    tensorboard/         the same scalars as TensorBoard events
    loss.png             the train and held-out loss against the step
    checkpoints/         see statetrack.lm.checkpoint
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from statetrack.train.metrics_log import METRICS, MetricsLog

INVOCATIONS = "invocations.jsonl"
LOSS_PNG = "loss.png"
TENSORBOARD = "tensorboard"


def versions() -> dict:
    """Python and the versions of the packages a run's numbers depend on."""
    out = {"python": platform.python_version()}
    for name in ("statetrack", "torch", "transformers", "numpy", "triton"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit(where: Path | None = None) -> dict | None:
    """{"commit", "dirty"} of the git checkout statetrack runs from, or None when it is not one."""
    where = where or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                                capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def invocation_record(world_size: int, device, resumed_from: str | None) -> dict:
    import torch

    dev = str(device)
    if getattr(device, "type", "cpu") == "cuda":
        dev = f"{dev} ({torch.cuda.get_device_name(device)})"
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "argv": sys.argv, "host": socket.gethostname(),
            "world_size": world_size, "device": dev, "resumed_from": resumed_from, "versions": versions(),
            "git": git_commit(), "pid": os.getpid()}  # fmt: skip


class RunLog:
    """Rank 0's outputs; on other ranks every method does nothing.

    ``resume_step``: metric lines (and TensorBoard events) after it are dropped, as the resumed run writes them
    again. ``total``: the run's steps (the bar's length)."""

    def __init__(self, out: Path, active: bool, resume_step: int, total: int, name: str, progress: bool):
        self.out, self.active = Path(out), active
        self.metrics = MetricsLog(self.out / METRICS if active else None, resume_step=resume_step)
        self.tb = None
        self.bar = None
        if not active:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.out / TENSORBOARD), purge_step=resume_step + 1 if resume_step else None)
        except ImportError:
            self.note("tensorboard is not installed: no TensorBoard events (pip install tensorboard)")
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=resume_step, desc=name, unit="step", dynamic_ncols=True,
                            leave=False, file=sys.stderr)  # fmt: skip

    def note(self, msg: str) -> None:
        """A line for the person at the terminal (stderr, above the bar)."""
        if not self.active:
            return
        if self.bar is not None:
            self.bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr, flush=True)

    def write(self, rec: dict) -> None:
        if not self.active:
            return
        self.metrics.write(rec)
        if self.tb is not None:
            kind, step = rec["kind"], rec["step"]
            for k, v in rec.items():
                if k not in ("kind", "step") and isinstance(v, int | float) and v is not None:
                    self.tb.add_scalar(f"{kind}/{k}", v, step)

    def advance(self, n: int, postfix: dict | None = None) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if not self.active:
            return
        self.metrics.close()
        if self.tb is not None:
            self.tb.close()
        if self.bar is not None:
            self.bar.close()


def write_invocation(out: Path, config_yaml: str, record: dict) -> None:
    """config.yaml (this invocation's resolved config) and a line in invocations.jsonl."""
    from statetrack.atomic import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", config_yaml)
    with open(out / INVOCATIONS, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl file."""
    if not Path(path).is_file():
        return []
    return [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]


def plot_losses(metrics_path: Path, png: Path, title: str = "") -> Path | None:
    """The train loss (and its running mean) and the held-out loss against the step, as a PNG."""
    from statetrack.plotting import pyplot, running_mean, save_figure

    recs = read_metrics(metrics_path)
    train = [(r["step"], r["loss"]) for r in recs if r.get("kind") == "train" and r.get("loss") is not None]
    evals = [(r["step"], r["loss"]) for r in recs if r.get("kind") == "eval" and r.get("loss") is not None]
    if not train and not evals:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        s, v = zip(*train, strict=True)
        ax.plot(s, v, alpha=0.35, lw=0.8, label="train")
        if len(v) >= 10:
            ax.plot(s, running_mean(v, before=max(len(v) // 20, 1)), lw=1.5, label="train (running mean)")
    if evals:
        s, v = zip(*evals, strict=True)
        ax.plot(s, v, "o-", lw=1.5, label="held-out")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, png, dpi=120)
