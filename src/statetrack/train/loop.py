"""The training loop: AdamW, warm-up + cosine, fresh task samples every step, periodic evaluation, JSON-lines
metrics, atomic checkpoints and exact resumption.

Reproducibility: the model is initialised under ``torch.manual_seed(seed)``, and the batch of step s is drawn
from a generator seeded by (seed, s) alone, so a resumed run sees the very batches an uninterrupted run would.
The checkpoint also carries the optimiser, scheduler and global RNG states.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from statetrack.models import TokenClassifier
from statetrack.ops import value_checks

from .checkpoint import load_checkpoint, rng_states, save_checkpoint, set_rng_states
from .config import ExperimentConfig, TrainConfig, dump_config
from .evaluate import EvalResult, evaluate
from .graphed import autocast_factory, build_step, pad_batch
from .schedule import make_scheduler

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device = {name!r} but CUDA is not available here; use 'cpu' or 'auto'")
    return dev


def fixed_width(task, train_lengths) -> int:
    """Positions of the longest training sequence: the one batch width of a graphed run."""
    hi = train_lengths if isinstance(train_lengths, int) else (train_lengths or task.train_lengths)[-1]
    return int(task.positions(int(hi)))


def uses_cuda_graph(tc: TrainConfig, device: torch.device) -> bool:
    """Whether the training step runs as a CUDA graph (``train.cuda_graph``)."""
    if tc.cuda_graph == "on" and device.type != "cuda":
        raise ValueError(f"train.cuda_graph = 'on' needs a CUDA device, got train.device = {tc.device!r}")
    return tc.cuda_graph == "on" or (tc.cuda_graph == "auto" and device.type == "cuda")


def get_task(name: str, args: dict | None = None):
    """The task object of statetrack.tasks (imported here: the trainer is the only user)."""
    from statetrack.tasks import get_task as _get

    return _get(name, **(args or {}))


def batch_generator(seed: int, step: int) -> torch.Generator:
    """The generator of step ``step``'s batch: a function of (seed, step) only."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % (2**63 - 1))


def _lengths(v: list[int]):
    return None if not v else (int(v[0]) if len(v) == 1 else (int(v[0]), int(v[1])))


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the positions where ``mask`` is True. logits [B, T, V]; target, mask [B, T].
    A masked mean rather than ``logits[mask]``: boolean indexing would sync with the GPU every step."""
    ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
    mf = mask.flatten().to(ce.dtype)
    return (ce * mf).sum() / mf.sum().clamp_min(1.0)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices and embeddings; leave vectors (norm gains, biases, gate constants) alone."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass
class TrainResult:
    """What a run leaves behind in memory: the model, the last evaluation, the evaluation history."""

    model: TokenClassifier
    step: int
    final: EvalResult | None
    history: list[dict] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    out_dir: Path | None = None


def build_model(cfg: ExperimentConfig, task) -> TokenClassifier:
    """The model of ``cfg`` (vocab size from the task when the config leaves it 0), under the run's seed."""
    if cfg.model.vocab_size == 0:
        cfg.model.vocab_size = int(task.vocab_size)
    if cfg.model.vocab_size < task.vocab_size:
        raise ValueError(f"model.vocab_size = {cfg.model.vocab_size} < the task's vocab_size {task.vocab_size}")
    cfg.validate()
    torch.manual_seed(cfg.train.seed)
    return TokenClassifier(cfg.model)


def eval_batch(cfg: ExperimentConfig, task):
    """The fixed evaluation set: the task's test set, or ``eval_samples`` sequences from a fixed seed."""
    t = cfg.train
    if t.eval_samples > 0:
        lengths = _lengths(t.eval_lengths) or tuple(task.test_lengths)
        return task.sample(t.eval_samples, generator=torch.Generator().manual_seed(2**31 - 1), lengths=lengths)
    return task.test_set(size=t.eval_size)


def train(
    cfg: ExperimentConfig,
    *,
    resume: bool | str | Path = False,
    stop_after: int | None = None,
    on_eval: Callable[[int, EvalResult], None] | None = None,
    write_files: bool = True,
    task=None,
) -> TrainResult:
    """Run (or continue) the experiment ``cfg``.

    Args:
        resume: True = continue from ``<out_dir>/checkpoint.pt``; a path = from that checkpoint.
        stop_after: stop after this global step (to split a run; the schedule still spans ``train.steps``).
        on_eval: called with (step, result) after each evaluation.
        write_files: write config.yaml, metrics.jsonl and checkpoints under the output folder.
        task: a task object to use instead of ``get_task(cfg.train.task)`` (tests).
    """
    t0 = time.perf_counter()
    cfg.train.validate()
    cfg.model.validate(require_vocab=False)  # bad model configs fail before any work
    tc = cfg.train
    task = task if task is not None else get_task(tc.task, tc.task_args)
    device = resolve_device(tc.device)
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    model = build_model(cfg, task).to(device)
    amp = tc.amp == "bf16" or (tc.amp == "auto" and device.type == "cuda")
    graphed = uses_cuda_graph(tc, device)
    # a captured step reads the lr from a device tensor that the scheduler refills (capturable AdamW)
    lr0 = torch.tensor(tc.lr, device=device) if graphed else tc.lr
    opt = torch.optim.AdamW(param_groups(model, tc.weight_decay), lr=lr0, betas=(tc.beta1, tc.beta2),
                            fused=device.type == "cuda", capturable=graphed)  # fmt: skip
    sched = make_scheduler(opt, tc.steps, tc.warmup, tc.lr, tc.min_lr)
    out = cfg.out_dir
    step, history, losses = 0, [], []

    if resume:
        ck = load_checkpoint(out / CHECKPOINT if resume is True else resume, map_location=device)
        if ck["config"]["model"] != cfg.model.to_dict():
            raise ValueError(
                f"cannot resume: the checkpoint's model config {ck['config']['model']} differs from this one "
                f"{cfg.model.to_dict()}"
            )
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        set_rng_states(ck["rng"])
        step, history, losses = ck["step"], ck.get("history", []), ck.get("losses", [])
    if write_files:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(dump_config(cfg))
        _truncate_metrics(out / METRICS, step)

    fwd = torch.compile(model, dynamic=not graphed) if tc.compile else model  # a graph has one shape
    evalset = eval_batch(cfg, task)
    prefix = getattr(task, "kind", "chomsky") == "group"
    end = tc.steps if stop_after is None else min(tc.steps, stop_after)
    final: EvalResult | None = None

    bar = None
    if tc.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=tc.steps, initial=step, desc=cfg.name, unit="step", dynamic_ncols=True, leave=False)
    log_f = open(out / METRICS, "a") if write_files else None  # noqa: SIM115 - closed in finally
    train_lengths = _lengths(tc.train_lengths)
    n_prefetch = tc.prefetch if tc.prefetch >= 0 else (2 if device.type == "cuda" else 0)
    batches = Prefetcher(task, tc.batch_size, tc.seed, train_lengths, end, n_prefetch)
    autocast = autocast_factory(device.type, amp, graphed)
    width = fixed_width(task, train_lengths) if graphed else None
    run_step = None
    t_last, s_last = time.perf_counter(), step
    first_step, pending = step, []
    unchecked = contextlib.ExitStack()
    try:
        model.train()
        while step < end:
            b = batches.get(step)
            x, y, m = b.input, b.target, b.mask
            if graphed:
                x, y, m = pad_batch(x, y, m, width, task.pad_id)
            x, y, m = (t.to(device, non_blocking=True) for t in (x, y, m))
            if run_step is None:  # built at the first batch: a graph is captured with a real batch's shapes
                run_step = build_step(model, fwd, opt, masked_cross_entropy, tc.grad_clip, autocast,
                                      example=(x, y, m) if graphed else None)  # fmt: skip
            loss, logits, gnorm = run_step(x, y, m)
            sched.step()
            step += 1
            if step == first_step + 1 and device.type == "cuda":
                # the ops' value-range checks read tensors back (a sync per op); the first step ran them
                unchecked.enter_context(value_checks(False))
            # losses stay on the device until a log line needs them: no host sync per step on a GPU
            pending.append(loss.detach().clone())  # a graph's loss buffer is overwritten by the next replay
            if bar is not None:
                bar.update(1)
            is_eval = (tc.eval_every and step % tc.eval_every == 0) or step == tc.steps
            is_ckpt = write_files and ((tc.ckpt_every and step % tc.ckpt_every == 0) or step == end)
            if step % tc.log_every == 0 or step == end or is_eval or is_ckpt:
                lv = _flush(pending, losses, step)
                acc = float(((logits.argmax(-1) == y) & m).sum() / m.sum().clamp_min(1))
                now = time.perf_counter()
                rate = (step - s_last) / max(now - t_last, 1e-9)
                t_last, s_last = now, step
                rec = {"kind": "train", "step": step, "loss": lv, "token_accuracy": acc,
                       "lr": float(sched.get_last_lr()[0]), "steps_per_s": rate}  # fmt: skip
                if gnorm is not None:
                    rec["grad_norm"] = float(gnorm)
                _log(log_f, rec)
                if bar is not None:
                    bar.set_postfix(loss=f"{lv:.4f}", acc=f"{acc:.3f}", refresh=False)
            if is_eval:
                final = evaluate(model, evalset, task.chance, batch_size=tc.eval_batch_size, device=device,
                                 amp=amp, prefix=prefix)  # fmt: skip
                rec = {"kind": "eval", "step": step, "loss": final.loss, "accuracy": final.accuracy,
                       "scaled_accuracy": final.scaled_accuracy, "token_accuracy": final.token_accuracy}  # fmt: skip
                history.append(rec)
                _log(log_f, {**rec, "per_length": final.to_dict()["per_length"]})
                if on_eval is not None:
                    on_eval(step, final)
                if bar is not None:
                    # to stderr with the bar: stdout stays for results
                    bar.write(f"[{cfg.name}] step {step}: eval scaled accuracy {final.scaled_accuracy:.3f}",
                              file=sys.stderr)  # fmt: skip
            if is_ckpt:
                save_checkpoint(out / CHECKPOINT, {
                    "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "rng": rng_states(), "step": step, "config": cfg.to_dict(), "history": history,
                    "losses": losses,
                })  # fmt: skip
    finally:
        batches.close()
        unchecked.close()
        if bar is not None:
            bar.close()
        if log_f is not None:
            log_f.close()
    return TrainResult(model, step, final, history, losses, time.perf_counter() - t0, out if write_files else None)


class Prefetcher:
    """The batch of each step, drawn by ``workers`` background threads ahead of time (0 = in the caller).

    Batches depend on (seed, step) only, so prefetching changes nothing but the time the trainer waits.
    """

    def __init__(self, task, batch_size: int, seed: int, lengths, end: int, workers: int):
        self.task, self.batch_size, self.seed, self.lengths, self.end = task, batch_size, seed, lengths, end
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="sampler") if workers > 0 else None
        self.ahead = 2 * workers
        self.futures: dict[int, Future] = {}

    def _draw(self, step: int):
        return self.task.sample(self.batch_size, generator=batch_generator(self.seed, step), lengths=self.lengths)

    def get(self, step: int):
        if self.pool is None:
            return self._draw(step)
        for s in range(step, min(step + self.ahead + 1, self.end)):
            if s not in self.futures:
                self.futures[s] = self.pool.submit(self._draw, s)
        return self.futures.pop(step).result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


def _flush(pending: list[torch.Tensor], losses: list[float], step: int) -> float:
    """Move the pending per-step losses to ``losses``; fail on a non-finite one. Returns the last."""
    vals = torch.stack(pending).tolist()
    pending.clear()
    for i, v in enumerate(vals):
        if not math.isfinite(v):
            bad = step - len(vals) + i + 1
            raise FloatingPointError(f"loss became {v} at step {bad}; lower train.lr or set train.grad_clip")
    losses.extend(vals)
    return vals[-1]


def _log(f, rec: dict) -> None:
    if f is not None:
        f.write(json.dumps(rec) + "\n")
        f.flush()


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep the metric lines up to ``step`` (those after the checkpoint will be written again)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    path.write_text("".join(ln + "\n" for ln in keep))


def load_model(path: str | Path, device="cpu") -> tuple[TokenClassifier, ExperimentConfig, int]:
    """A trained model from a checkpoint file or run folder: (model in eval mode, its config, its step)."""
    ck = load_checkpoint(path, map_location=device)
    cfg = ExperimentConfig.from_dict(ck["config"])
    model = TokenClassifier(cfg.model)
    model.load_state_dict(ck["model"])
    return model.to(device).eval(), cfg, int(ck["step"])
