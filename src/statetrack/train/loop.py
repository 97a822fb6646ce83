"""The training loop: fresh task samples every step, periodic evaluation, JSON-lines metrics, atomic
checkpoints and exact resumption.

Reproducibility: the model is initialised under ``torch.manual_seed(seed)``, and the batch of step s is drawn
from a generator seeded by (seed, s) alone, so a resumed run sees the very batches an uninterrupted run would.
The checkpoint also carries the optimiser, scheduler and global RNG states. With ``handle_signals`` (as in
``statetrack train``) SIGINT / SIGTERM stop the run at the end of the step with a checkpoint
(:class:`~.signals.TrainingStopped`); a run killed outright continues from its last checkpoint
(``train.ckpt_every``); either way a resumed run logs the very losses of an uninterrupted one.

The parts live beside it, one job each: ``loss`` (masked cross-entropy), ``optim`` (AdamW and its parameter
groups), ``schedule`` (warm-up + cosine), ``prefetch`` (the batch of each step), ``graphed`` (one step, eager or
as a CUDA graph), ``device`` (the "auto" settings resolved), ``model``, ``checkpoint``, ``metrics_log``,
``evaluate``, ``signals``, ``determinism`` (``train.deterministic``: bitwise-equal losses for the same key on
the same GPU and software).
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from statetrack.models import TokenClassifier
from statetrack.tasks import get_task

from .checkpoint import RESUME_KEYS, Checkpointer, read_checkpoint, rng_states, set_rng_states
from .config import ExperimentConfig, dump_config, sample_lengths
from .determinism import deterministic, refusals
from .device import CheckPhases, resolve_device, uses_amp, uses_cuda_graph, value_check_phases
from .evaluate import EvalResult, eval_batch, evaluate
from .graphed import autocast_factory, build_step, fixed_width, pad_batch
from .loss import masked_cross_entropy
from .metrics_log import METRICS, MetricsLog
from .model import build_model
from .optim import make_optimizer
from .prefetch import Prefetcher
from .schedule import make_scheduler
from .signals import StopSignals, TrainingStopped


@dataclass
class TrainResult:
    """What a run leaves behind in memory: the model, the step it reached, the last evaluation, the evaluation
    history and every step's loss (those before a resume included); and of this invocation: its steps, their
    rate (training only: evaluations and checkpoints not counted), its wall time, the checkpoint it resumed from
    and the one it saved last."""

    model: TokenClassifier
    step: int
    final: EvalResult | None
    history: list[dict] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    out_dir: Path | None = None
    steps_run: int = 0
    steps_per_s: float | None = None
    resumed_from: Path | None = None
    checkpoint: Path | None = None


def train(
    cfg: ExperimentConfig,
    *,
    resume: bool | str | Path = False,
    stop_after: int | None = None,
    on_eval: Callable[[int, EvalResult], None] | None = None,
    write_files: bool = True,
    task=None,
    handle_signals: bool = False,
    note: Callable[[str], None] | None = None,
) -> TrainResult:
    """Run (or continue) the experiment ``cfg``.

    Args:
        resume: True = continue from the newest good checkpoint of ``out_dir`` (from step 0 when it has none); a
            path = from that checkpoint file (or run folder). A bad checkpoint is reported by path and why, and
            the one before it is used.
        stop_after: stop after this global step (to split a run; the schedule still spans ``train.steps``).
        on_eval: called with (step, result) after each evaluation.
        write_files: write config.yaml, metrics.jsonl and checkpoints under the output folder.
        task: a task object to use instead of ``statetrack.tasks.get_task(train.task, **train.task_args)``.
        handle_signals: SIGINT / SIGTERM (in the main thread) end the step, save a checkpoint and raise
            :class:`~.signals.TrainingStopped` (a KeyboardInterrupt) saying where (``statetrack train`` does
            this). False (the default, for callers with their own handling, such as the reproduce sweep's
            workers, which a SIGTERM must end at once): the handlers are left as they are.
        note: where one-line reports go (resuming, a bad checkpoint skipped); default: stderr.

    Raises:
        TrainingStopped: with ``handle_signals``, a signal stopped the run (after its checkpoint was written).
    """
    if cfg.train.deterministic:
        why = refusals(cfg)
        if why:
            raise ValueError("train.deterministic = true cannot apply: " + "; ".join(why))
    with deterministic(cfg.train.deterministic):
        return _train(cfg, resume=resume, stop_after=stop_after, on_eval=on_eval, write_files=write_files, task=task,
                      handle_signals=handle_signals, note=note)  # fmt: skip


def _train(cfg: ExperimentConfig, *, resume, stop_after, on_eval, write_files, task, handle_signals,
           note) -> TrainResult:  # fmt: skip
    note = note if note is not None else _stderr
    t0 = time.perf_counter()
    tc = cfg.train
    task, device, graphed, first_checks, later_checks = setup_run([cfg], task)
    model = build_model(cfg, task).to(device)
    amp = uses_amp(tc, device)
    opt = make_optimizer(model, tc, device, graphed)
    sched = make_scheduler(opt, tc.steps, tc.warmup, tc.lr, tc.min_lr)
    out = cfg.out_dir
    step, history, losses = 0, [], []
    ckpts = Checkpointer(out, tc.keep_last, note) if write_files else None
    resumed_from = None

    if resume:
        try:
            resumed_from, ck = read_checkpoint(out if resume is True else resume, map_location=device,
                                               require=RESUME_KEYS, note=note)  # fmt: skip
        except FileNotFoundError:
            if resume is not True:
                raise
            note(f"no checkpoint in {out}: starting from step 0")
        else:
            if ck["config"]["model"] != cfg.model.to_dict():
                raise ValueError(
                    f"cannot resume from {resumed_from}: the checkpoint's model config {ck['config']['model']} "
                    f"differs from this one {cfg.model.to_dict()}"
                )
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            set_rng_states(ck["rng"])
            step, history, losses = int(ck["step"]), ck.get("history", []), ck.get("losses", [])
            note(f"resuming from step {step} ({resumed_from})")
            if ckpts is not None:
                ckpts.continue_from(resumed_from, step)
    if write_files:
        out.mkdir(parents=True, exist_ok=True)
        ckpts.clean_partials()
        (out / "config.yaml").write_text(dump_config(cfg))

    fwd = torch.compile(model, dynamic=not graphed) if tc.compile else model  # a graph has one shape
    evalset = eval_batch(cfg, task)
    prefix = getattr(task, "kind", "chomsky") == "group"
    end = tc.steps if stop_after is None else min(tc.steps, stop_after)
    final: EvalResult | None = None

    bar = None
    if tc.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=tc.steps, initial=step, desc=cfg.name, unit="step", dynamic_ncols=True, leave=False)
    log = MetricsLog(out / METRICS if write_files else None, resume_step=step)
    train_lengths = sample_lengths(tc.train_lengths)
    n_prefetch = tc.prefetch if tc.prefetch >= 0 else (2 if device.type == "cuda" else 0)
    batches = Prefetcher(task, tc.batch_size, tc.seed, train_lengths, end, n_prefetch)
    autocast = autocast_factory(device.type, amp, graphed)
    width = fixed_width(task, train_lengths) if graphed else None
    run_step = None
    t_last, s_last = time.perf_counter(), step
    first_step, pending = step, []
    t_loop, t_aside = time.perf_counter(), 0.0  # t_aside: evaluations and checkpoints, not in the rate
    checks = contextlib.ExitStack()
    phases = CheckPhases((first_checks, later_checks), checks)
    signals = checks.enter_context(StopSignals(handle_signals))

    def save() -> None:
        nonlocal t_aside, t_last
        t = time.perf_counter()
        ckpts.save(step, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "rng": rng_states(), "step": step, "config": cfg.to_dict(), "history": history, "losses": losses,
        })  # fmt: skip
        t_aside += time.perf_counter() - t
        t_last += time.perf_counter() - t

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
                                      example=(x, y, m) if graphed else None,
                                      eager_fallback=not tc.deterministic)  # fmt: skip
            loss, logits, gnorm = run_step(x, y, m)
            sched.step()
            step += 1
            phases.stepped()  # train.value_checks, see .device
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
                log.write(rec)
                if bar is not None:
                    bar.set_postfix(loss=f"{lv:.4f}", acc=f"{acc:.3f}", refresh=False)
            if is_eval:
                t_eval = time.perf_counter()
                final = evaluate(model, evalset, task.chance, batch_size=tc.eval_batch_size, device=device,
                                 amp=amp, prefix=prefix)  # fmt: skip
                rec = {"kind": "eval", "step": step, "loss": final.loss, "accuracy": final.accuracy,
                       "scaled_accuracy": final.scaled_accuracy, "token_accuracy": final.token_accuracy}  # fmt: skip
                history.append(rec)
                log.write({**rec, "per_length": final.to_dict()["per_length"]})
                if on_eval is not None:
                    on_eval(step, final)
                if bar is not None:
                    # to stderr with the bar: stdout stays for results
                    bar.write(f"[{cfg.name}] step {step}: eval scaled accuracy {final.scaled_accuracy:.3f}",
                              file=sys.stderr)  # fmt: skip
                t_aside += time.perf_counter() - t_eval
                t_last += time.perf_counter() - t_eval  # the logged rate counts training only
            if is_ckpt:
                save()
            if signals.received is not None and step < end:
                # the step's losses go into the checkpoint; no log line that an uninterrupted run would not write
                if pending:
                    _flush(pending, losses, step)
                if write_files and not is_ckpt:
                    save()
                name = signal.Signals(signals.received).name
                raise TrainingStopped(name, step, ckpts.last_saved if write_files else None)
    finally:
        batches.close()
        checks.close()
        if bar is not None:
            bar.close()
        log.close()
    t_end = time.perf_counter()
    steps_run = step - first_step
    rate = steps_run / max(t_end - t_loop - t_aside, 1e-9) if steps_run else None
    return TrainResult(model, step, final, history, losses, t_end - t0, out if write_files else None,
                       steps_run=steps_run, steps_per_s=rate, resumed_from=resumed_from,
                       checkpoint=ckpts.last_saved if ckpts is not None else None)  # fmt: skip


def setup_run(cfgs: list[ExperimentConfig], task):
    """What a training run (or an ensemble of runs of one cell, ``cfgs``) settles before any work: the configs
    validated (bad ones fail here), the task (``task`` or the first config's), the device, whether steps are
    CUDA-graphed, the value-check phases, torch's CPU threads. Returns (task, device, graphed, first_checks,
    later_checks)."""
    for c in cfgs:
        c.train.validate()
        c.model.validate(require_vocab=False)
    tc = cfgs[0].train
    task = task if task is not None else get_task(tc.task, **tc.task_args)
    device = resolve_device(tc.device)
    graphed = uses_cuda_graph(tc, device)
    first_checks, later_checks = value_check_phases(tc.value_checks, device, graphed)
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    return task, device, graphed, first_checks, later_checks


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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
