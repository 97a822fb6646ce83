"""Many runs as one batched model: the runs of one (model, task) cell that differ only in learning rate and seed,
trained together, each member exactly the run it would be alone.

Shape letters: E members, B sequences per member and step (``train.batch_size``), T positions (the longest of
the step's E batches, or the fixed width of a CUDA graph), V the vocabulary, D the width.

- The members are E ordinary :class:`~statetrack.models.TokenClassifier` s, each built by
  :func:`~.model.build_model` under its own seed (the very initial weights of its single run), each with its own
  AdamW (:func:`~.optim.make_optimizer`, its own lr) and warm-up + cosine schedule (:func:`~.schedule.make_scheduler`),
  its own batch stream (:class:`~.prefetch.Prefetcher` with its seed), metrics file, checkpoints and
  evaluations (:func:`~.evaluate.evaluate` on the member itself), in its own run folder, in the single run's formats.
- One step: each member's batch [B, T_e] right-padded to T (causal models, masked loss: the extra columns change
  nothing a member learns, as in a graphed run) and stacked, tokens [E, B, T]; the parameters stacked [E, ...] by
  ``torch.stack`` (so that gradients land on each member's own tensors) and the members run as one model by
  ``torch.func.vmap`` over ``torch.func.functional_call``: logits [E, B, T, V]; losses [E], one
  :func:`~.loss.masked_cross_entropy` per member; backward of their sum (d sum / d loss_e = 1: member e gets the
  gradient of its own loss); each member's gradient clipped by its own norm; each optimiser and schedule steps.
- vmap cannot trace the ops' custom autograd Functions and Triton kernels, so while the members run, the mixers'
  calls of those ops go through batching rules (:data:`FOLDED_OPS`) that call the op once on plain tensors:
  ``delta_rule`` and ``diag_scan`` with the ensemble folded into the batch axis ([E, B, ...] -> [E B, ...]),
  ``slstm_scan`` with it folded into the heads (its recurrent weights are per member: r [E, H, K, 4, K] ->
  [E H, K, 4, K], wx [E, B, T, 4, H, K] -> [B, T, 4, E H, K]); ``selective_scan`` takes one A for the whole batch,
  so Mamba's members each run their own scan (the projections around it are still batched). DeltaNet's fused
  layer ops (short conv, L2 norm, output norm: Triton on CUDA) take their torch references
  (:func:`torch_layer_ops`), which vmap batches. Everything else
  (projections, convolutions, norms, attention, the mLSTM's parallel form) is vmap's own batching.
- Exactness: a member computes what its run computes alone, in batched kernels and at the padded width T, so
  its losses agree to fp32 rounding (tests/train/test_ensemble.py measures it for every mixer of Table 3), not
  bitwise. On a CUDA device the step is one CUDA graph (``train.cuda_graph``, as a single run) over all members.
- A member whose loss becomes non-finite stops (``diverged`` in its result, as the single run's
  FloatingPointError); the others go on. On the CPU every step's losses are checked (the ops' value checks would
  otherwise trip over its NaN weights in the next step), on CUDA at each log line, as a single run does.

Not here: ``train.compile`` (ignored: members run eagerly or graphed), SIGINT / SIGTERM handling (the sweep's
workers, the only callers, are ended at once), ``cu_seqlens``. Use :func:`ensemble_cell` to tell which runs can
share an ensemble.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, vmap

from statetrack.ops import delta_rule, diag_scan, selective_scan, slstm_scan

from .checkpoint import RESUME_KEYS, Checkpointer, read_checkpoint, rng_states
from .config import ExperimentConfig, dump_config, sample_lengths
from .determinism import deterministic, refusals
from .device import CheckPhases, uses_amp
from .evaluate import EvalResult, eval_batch, evaluate
from .graphed import GraphedStep, autocast_factory, fixed_width, pad_batch, restore, snapshot
from .loop import TrainResult, _stderr, setup_run
from .loss import masked_cross_entropy
from .metrics_log import METRICS, MetricsLog
from .model import build_model
from .optim import make_optimizer
from .prefetch import Prefetcher
from .schedule import make_scheduler

#: the config fields in which the members of one ensemble may differ (dotted names)
MEMBER_FIELDS = ("name", "train.lr", "train.seed", "train.out_dir")

#: mixers whose ensembles are tested equal to their single runs (tests/train/test_ensemble.py)
ENSEMBLE_MIXERS = frozenset({"deltanet", "mamba", "slstm", "mlstm", "transformer", "diagonal_rnn"})


def ensemble_cell(config: dict) -> str:
    """The part of a config (``ExperimentConfig.to_dict()``) that the members of an ensemble share: everything but
    :data:`MEMBER_FIELDS`, as canonical JSON. Runs with equal cells can be trained as one ensemble."""
    d = json.loads(json.dumps(config))  # a deep copy of plain data
    for name in MEMBER_FIELDS:
        *path, last = name.split(".")
        node = d
        for p in path:
            node = node.get(p, {})
        node.pop(last, None)
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


# ------------------------------------------------------------------------------------ ops under vmap


class _Folded(torch.autograd.Function):
    """Carries one op call through vmap: vmap hands the call's plain tensors (with their batch dims) to
    ``rule``, which calls the op on them; autograd records what the rule does, so no backward of its own."""

    generate_vmap_rule = False

    @staticmethod
    def forward(rule, *args):
        raise RuntimeError("train.ensemble: a folded op was called outside the ensemble's vmap")

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError("train.ensemble: a folded op's own backward is never used")

    @staticmethod
    def vmap(info, in_dims, rule, *args):
        return rule(info.batch_size, in_dims[1:], *args)


def _leading(t: torch.Tensor | None, dim: int | None, E: int) -> torch.Tensor | None:
    """A call's tensor with the ensemble axis first: [E, ...] (a tensor shared by the members is expanded)."""
    if t is None:
        return None
    return t.movedim(dim, 0) if dim is not None else t.expand(E, *t.shape)


def _call_folded(rule, tensors: list, *extra):
    """``rule(E, dims, *tensors, *extra)`` through :class:`_Folded`; Nones stay out of the Function (its
    outputs are tensors only) and come back as None."""
    present = [i for i, t in enumerate(tensors) if t is not None]

    def inner(E, dims, *args):
        full = [None] * len(tensors)
        for i, t, d in zip(present, args, dims, strict=True):
            full[i] = _leading(t, d, E)
        return rule(E, full, *extra)

    return _Folded.apply(inner, *(tensors[i] for i in present))


def _delta_rule(q, k, v, beta, *, log_decay=None, initial_state=None, cu_seqlens=None, **options):
    if cu_seqlens is not None:
        raise ValueError("train.ensemble: cu_seqlens is not supported inside an ensemble")

    def rule(E, full, opts):
        q, k, v, beta, log_decay, S0 = (None if t is None else t.flatten(0, 1) for t in full)
        o, S = delta_rule(q, k, v, beta, log_decay=log_decay, initial_state=S0, **opts)
        outs = (o.unflatten(0, (E, -1)),) + (() if S is None else (S.unflatten(0, (E, -1)),))
        return outs, (0,) * len(outs)

    res = _call_folded(rule, [q, k, v, beta, log_decay, initial_state], options)
    return res[0], (res[1] if len(res) > 1 else None)


def _diag_scan(a, b, *, initial_state=None, **options):
    def rule(E, full, opts):
        a, b, h0 = (None if t is None else t.flatten(0, 1) for t in full)
        h, last = diag_scan(a, b, initial_state=h0, **opts)
        outs = (h.unflatten(0, (E, -1)),) + (() if last is None else (last.unflatten(0, (E, -1)),))
        return outs, (0,) * len(outs)

    res = _call_folded(rule, [a, b, initial_state], options)
    return res[0], (res[1] if len(res) > 1 else None)


def _slstm_scan(wx, r, *, state=None, **options):
    """wx [E, B, T, 4, H, K] -> [B, T, 4, E H, K]; r [E, H, K, 4, K] -> [E H, K, 4, K]; state [E, B, H, K] ->
    [B, E H, K]: the heads are independent, so the members become heads of one call."""
    st = list(state) if state is not None else [None] * 4

    def rule(E, full, opts):
        wx, r, *s = full
        _, B, T, G, H, K = wx.shape
        wx = wx.permute(1, 2, 3, 0, 4, 5).reshape(B, T, G, E * H, K)
        r = r.reshape(E * H, *r.shape[2:])
        s = None if s[0] is None else tuple(x.transpose(0, 1).reshape(B, E * H, K) for x in s)
        h, fin = slstm_scan(wx, r, state=s, **opts)
        outs = (h.unflatten(2, (E, H)),) + (() if fin is None else tuple(f.unflatten(1, (E, H)) for f in fin))
        return outs, (2,) + (1,) * (len(outs) - 1)

    res = _call_folded(rule, [wx, r, *st], options)
    return res[0], (tuple(res[1:]) if len(res) > 1 else None)


def _selective_scan(u, delta, A, B, C, *, D=None, z=None, initial_state=None, **options):
    """One scan per member: the op takes one A [Dm, N] (and D [Dm]) for its whole batch."""

    def rule(E, full, opts):
        ys, hs = [], []
        for e in range(E):
            u, delta, A, B, C, D, z, h0 = (None if t is None else t[e] for t in full)
            y, h = selective_scan(u, delta, A, B, C, D=D, z=z, initial_state=h0, **opts)
            ys.append(y)
            hs.append(h)
        outs = (torch.stack(ys),) + (() if hs[0] is None else (torch.stack(hs),))
        return outs, (0,) * len(outs)

    res = _call_folded(rule, [u, delta, A, B, C, D, z, initial_state], options)
    return res[0], (res[1] if len(res) > 1 else None)


#: (layer module, the op's name there, the op itself, its batching rule): swapped in while the members run
FOLDED_OPS = (
    ("statetrack.layers.delta_net", "delta_rule", delta_rule, _delta_rule),
    ("statetrack.layers.diagonal_rnn", "diag_scan", diag_scan, _diag_scan),
    ("statetrack.layers.xlstm", "slstm_scan", slstm_scan, _slstm_scan),
    ("statetrack.layers.mamba", "selective_scan", selective_scan, _selective_scan),
)


@contextlib.contextmanager
def folded_ops():
    """The layers call :data:`FOLDED_OPS`' batching rules instead of the ops (inside the ensemble's vmap only)."""
    mods = [(importlib.import_module(m), name, op, rule) for m, name, op, rule in FOLDED_OPS]
    for mod, name, op, _ in mods:
        if getattr(mod, name, None) is not op:
            raise RuntimeError(f"train.ensemble: {mod.__name__}.{name} is no longer statetrack.ops.{op.__name__}; "
                               "update FOLDED_OPS")  # fmt: skip
    try:
        for mod, name, _, rule in mods:
            setattr(mod, name, rule)
        yield
    finally:
        for mod, name, op, _ in mods:
            setattr(mod, name, op)


@contextlib.contextmanager
def torch_layer_ops(model: nn.Module):
    """The layer ops that a mixer may run as fused Triton kernels (its ``fused_ops``: DeltaNet's short conv, q/k
    L2 norm and output norm on CUDA) take their torch references inside ``model`` for the block: vmap batches
    those (the same math; the rounding differs as between the two backends of a single run)."""
    mods = [m for m in model.modules() if isinstance(getattr(m, "fused_ops", None), str)]
    saved = [m.fused_ops for m in mods]
    try:
        for m in mods:
            m.fused_ops = "torch"
        yield
    finally:
        for m, v in zip(mods, saved, strict=True):
            m.fused_ops = v


# ------------------------------------------------------------------------------------ the stacked model


class EnsembleForward:
    """tokens [E, B, T] -> logits [E, B, T, V]: the members run as one model (parameters stacked [E, ...] at each
    call, so that autograd hands each member's gradient to its own tensors)."""

    def __init__(self, members: list[nn.Module]):
        self.members = list(members)
        self.names = [n for n, _ in self.members[0].named_parameters()]
        self.buffer_names = [n for n, _ in self.members[0].named_buffers()]
        by_member = [(dict(m.named_parameters()), dict(m.named_buffers())) for m in self.members]
        self.params = [[p[n] for n in self.names] for p, _ in by_member]
        self.buffers = [[b[n] for n in self.buffer_names] for _, b in by_member]

    def _one(self, params: dict, buffers: dict, tokens: torch.Tensor) -> torch.Tensor:
        return functional_call(self.members[0], (params, buffers), (tokens,))

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[0] != len(self.members):
            raise ValueError(f"tokens must have shape [E={len(self.members)}, B, T], got {list(tokens.shape)}")
        params = {n: torch.stack([p[i] for p in self.params]) for i, n in enumerate(self.names)}
        buffers = {n: torch.stack([b[i] for b in self.buffers]) for i, n in enumerate(self.buffer_names)}
        with folded_ops(), torch_layer_ops(self.members[0]):  # members[0]'s modules run every member
            return vmap(self._one)(params, buffers, tokens)


class Optimizers:
    """The members' optimisers as one (what a graphed step snapshots and restores): their states and param
    groups side by side; ``zero_grad`` and ``step`` call each."""

    def __init__(self, opts: list[torch.optim.Optimizer]):
        self.opts = opts

    @property
    def state(self) -> dict:
        return {p: s for o in self.opts for p, s in o.state.items()}

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.opts for g in o.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.opts:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.opts:
            o.step()


def make_ensemble_step(members: list[nn.Module], forward: EnsembleForward, opt: Optimizers, loss_fn,
                       grad_clip: float, autocast_factory):  # fmt: skip
    """The ensemble's step: (x, y, m) [E, B, T] -> (losses [E], logits [E, B, T, V], grad norms [E] or None)."""

    def step(x, y, m):
        with autocast_factory():
            logits = forward(x)
        logits = logits.float()
        losses = torch.stack([loss_fn(logits[e], y[e], m[e]) for e in range(len(members))])
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        gnorm = None
        if grad_clip > 0:
            gnorm = torch.stack([torch.nn.utils.clip_grad_norm_(mm.parameters(), grad_clip) for mm in members])
        opt.step()
        return losses, logits, gnorm

    return step


def graph_step(step, model: nn.Module, opt: Optimizers, example, eager_fallback: bool = True):
    """``step`` as one CUDA graph (:class:`~.graphed.GraphedStep`: model and optimisers restored after its
    warm-up); if capture fails, the eager step on the same padded batches, with a warning saying why
    (``eager_fallback=False``, as under ``train.deterministic``: the capture's error, after the restore)."""
    saved = snapshot(model, opt)
    try:
        return GraphedStep(step, model, opt, example)
    except Exception as e:  # noqa: BLE001 - any capture failure: train eagerly, say why
        if not eager_fallback:
            torch.cuda.synchronize()
            restore(model, opt, saved)
            raise
        warnings.warn(f"ensemble: CUDA graph capture failed ({type(e).__name__}: {e}); training eagerly",
                      stacklevel=2)  # fmt: skip
        torch.cuda.synchronize()
        restore(model, opt, saved)
        return step


# ------------------------------------------------------------------------------------ the trainer


@dataclass
class MemberResult(TrainResult):
    """A member's :class:`~.loop.TrainResult`; ``diverged``: the single run's FloatingPointError message when its
    loss became non-finite (then its model is left as it was, its ``final`` None)."""

    diverged: str = ""


def check_members(cfgs: list[ExperimentConfig]) -> None:
    """The members must differ only in :data:`MEMBER_FIELDS`, and use a mixer of :data:`ENSEMBLE_MIXERS`."""
    if not cfgs:
        raise ValueError("an ensemble needs at least one member config")
    cell = ensemble_cell(cfgs[0].to_dict())
    for i, c in enumerate(cfgs[1:], 1):
        if ensemble_cell(c.to_dict()) != cell:
            a, b = json.loads(cell), json.loads(ensemble_cell(c.to_dict()))
            diff = _first_difference(a, b)
            raise ValueError(f"ensemble member {i} differs from member 0 in {diff} (members may differ only in "
                             f"{', '.join(MEMBER_FIELDS)})")  # fmt: skip
    if cfgs[0].model.mixer not in ENSEMBLE_MIXERS:
        raise ValueError(f"model.mixer = {cfgs[0].model.mixer!r} has no tested ensemble; use one of "
                         f"{sorted(ENSEMBLE_MIXERS)} or train its runs one by one")  # fmt: skip
    outs = [str(c.out_dir) for c in cfgs]
    if len(set(outs)) != len(outs):
        raise ValueError(f"ensemble members need distinct run folders, got {outs}")


def _first_difference(a, b, prefix="") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
    return f"{prefix.rstrip('.')} ({a!r} vs {b!r})"


class _Member:
    """One member's own things: config, model, optimiser, schedule, batches, log, checkpoints and records."""

    def __init__(self, cfg, task, device, graphed, write_files, note, end, n_prefetch):
        self.cfg, tc = cfg, cfg.train
        self.model = build_model(cfg, task).to(device)
        self.opt = make_optimizer(self.model, tc, device, graphed)
        self.sched = make_scheduler(self.opt, tc.steps, tc.warmup, tc.lr, tc.min_lr)
        self.out = cfg.out_dir
        self.ckpts = Checkpointer(self.out, tc.keep_last, note) if write_files else None
        self.step, self.history, self.losses, self.resumed_from = 0, [], [], None
        self.final: EvalResult | None = None
        self.diverged = ""
        self.task, self.n_prefetch, self.end = task, n_prefetch, end
        self.log = self.batches = None

    def resume(self, resume, device, note) -> None:
        try:
            self.resumed_from, ck = read_checkpoint(self.out if resume is True else resume, map_location=device,
                                                    require=RESUME_KEYS, note=note)  # fmt: skip
        except FileNotFoundError:
            if resume is not True:
                raise
            note(f"no checkpoint in {self.out}: starting from step 0")
            return
        if ck["config"]["model"] != self.cfg.model.to_dict():
            raise ValueError(f"cannot resume from {self.resumed_from}: the checkpoint's model config differs")
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        self.step, self.history, self.losses = int(ck["step"]), ck.get("history", []), ck.get("losses", [])
        note(f"resuming from step {self.step} ({self.resumed_from})")
        if self.ckpts is not None:
            self.ckpts.continue_from(self.resumed_from, self.step)

    def start(self, write_files: bool, lengths) -> None:
        tc = self.cfg.train
        if write_files:
            self.out.mkdir(parents=True, exist_ok=True)
            self.ckpts.clean_partials()
            (self.out / "config.yaml").write_text(dump_config(self.cfg))
        self.log = MetricsLog(self.out / METRICS if write_files else None, resume_step=self.step)
        self.batches = Prefetcher(self.task, tc.batch_size, tc.seed, lengths, self.end, self.n_prefetch)

    def save(self, step: int) -> None:
        self.ckpts.save(step, {
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "rng": rng_states(), "step": step, "config": self.cfg.to_dict(), "history": self.history,
            "losses": self.losses,
        })  # fmt: skip

    def close(self) -> None:
        if self.batches is not None:
            self.batches.close()
        if self.log is not None:
            self.log.close()


def train_ensemble(
    cfgs: list[ExperimentConfig],
    *,
    resume: bool = False,
    stop_after: int | None = None,
    write_files: bool = True,
    task=None,
    note: Callable[[str], None] | None = None,
) -> list[MemberResult]:
    """Train the runs ``cfgs`` (which differ only in :data:`MEMBER_FIELDS`) as one ensemble; one
    :class:`MemberResult` per config, in order. Each member writes what :func:`~.loop.train` writes for its config
    (config.yaml, metrics.jsonl, checkpoints in its ``out_dir``) and logs what it logs.

    Args:
        resume: continue each member from the newest good checkpoint of its folder; all members must then be at
            the same step (a ValueError says where they are otherwise: train them one by one).
        stop_after: stop after this global step (the schedules still span ``train.steps``).
        write_files, task, note: as for :func:`~.loop.train`.

    ``train.deterministic`` applies as in :func:`~.loop.train` (:mod:`.determinism`): an ensemble then gives the
    same losses every time it is trained, not bitwise its members' single runs' (see the module docstring).
    """
    if cfgs and cfgs[0].train.deterministic:
        why = refusals(cfgs[0])
        if why:
            raise ValueError("train.deterministic = true cannot apply: " + "; ".join(why))
    with deterministic(bool(cfgs and cfgs[0].train.deterministic)):
        return _train_ensemble(cfgs, resume=resume, stop_after=stop_after, write_files=write_files, task=task,
                               note=note)  # fmt: skip


def _train_ensemble(cfgs, *, resume, stop_after, write_files, task, note) -> list[MemberResult]:
    note = note if note is not None else _stderr
    t0 = time.perf_counter()
    task, device, graphed, first_checks, later_checks = setup_run(cfgs, task)
    check_members(cfgs)
    tc = cfgs[0].train
    end = tc.steps if stop_after is None else min(tc.steps, stop_after)
    n_prefetch = tc.prefetch if tc.prefetch >= 0 else (2 if device.type == "cuda" else 0)
    members = [_Member(c, task, device, graphed, write_files, note, end, n_prefetch) for c in cfgs]
    if resume:
        for mb in members:
            mb.resume(resume, device, note)
        steps = {mb.step for mb in members}
        if len(steps) > 1:
            raise ValueError(f"cannot resume as one ensemble: the members' checkpoints are at steps "
                             f"{[mb.step for mb in members]}; train them one by one")  # fmt: skip
    step = members[0].step
    first_step = step
    amp = uses_amp(tc, device)
    train_lengths = sample_lengths(tc.train_lengths)
    for mb in members:
        mb.start(write_files, train_lengths)
    evalset = eval_batch(cfgs[0], task)
    prefix = getattr(task, "kind", "chomsky") == "group"
    autocast = autocast_factory(device.type, amp, graphed)
    width = fixed_width(task, train_lengths) if graphed else None
    check_every_step = device.type != "cuda"  # see the module docstring: a NaN member must stop before its next step
    active = [mb for mb in members]
    run_step, pending = None, []
    t_last, s_last = time.perf_counter(), step
    t_loop, t_aside = time.perf_counter(), 0.0
    checks = contextlib.ExitStack()
    phases = CheckPhases((first_checks, later_checks), checks)

    def flush(upto: int) -> None:
        """pending [(step, losses [E_active])] -> each member's losses; a non-finite one stops its member."""
        nonlocal run_step, active
        if not pending:
            return
        vals = torch.stack([v for _, v in pending]).tolist()  # [n, E]
        steps_ = [s for s, _ in pending]
        pending.clear()
        stopped = []
        for j, mb in enumerate(active):
            col = [row[j] for row in vals]
            bad = next((i for i, v in enumerate(col) if not math.isfinite(v)), None)
            if bad is None:
                mb.losses.extend(col)
            else:
                mb.diverged = (f"loss became {col[bad]} at step {steps_[bad]}; lower train.lr or set "
                               "train.grad_clip")  # fmt: skip
                stopped.append(mb)
        if stopped:
            active = [mb for mb in active if mb not in stopped]
            run_step = None  # rebuilt (and recaptured) for the members left

    try:
        for mb in members:
            mb.model.train()
        while step < end and active:
            xs, ys, ms = [], [], []
            for mb in active:
                b = mb.batches.get(step)
                xs.append(b.input)
                ys.append(b.target)
                ms.append(b.mask)
            T = width if graphed else max(x.shape[1] for x in xs)
            padded = [pad_batch(x, y, m, T, task.pad_id) for x, y, m in zip(xs, ys, ms, strict=True)]
            x, y, m = (torch.stack(t).to(device, non_blocking=True) for t in zip(*padded, strict=True))
            if run_step is None:
                models = [mb.model for mb in active]
                opt = Optimizers([mb.opt for mb in active])
                forward = EnsembleForward(models)
                run_step = make_ensemble_step(models, forward, opt, masked_cross_entropy, tc.grad_clip, autocast)
                if graphed:
                    run_step = graph_step(run_step, nn.ModuleList(models), opt, (x, y, m), not tc.deterministic)
            losses, logits, gnorm = run_step(x, y, m)
            for mb in active:
                mb.sched.step()
            step += 1
            phases.stepped()
            pending.append((step, losses.detach().clone()))
            is_eval = (tc.eval_every and step % tc.eval_every == 0) or step == tc.steps
            is_ckpt = write_files and ((tc.ckpt_every and step % tc.ckpt_every == 0) or step == end)
            is_log = step % tc.log_every == 0 or step == end or is_eval or is_ckpt
            if is_log or check_every_step:
                logged = list(active)
                flush(step)
            if is_log:
                now = time.perf_counter()
                rate = (step - s_last) / max(now - t_last, 1e-9)
                t_last, s_last = now, step
                for j, mb in enumerate(logged):
                    if mb not in active:
                        continue
                    lm = m[j]
                    acc = float(((logits[j].argmax(-1) == y[j]) & lm).sum() / lm.sum().clamp_min(1))
                    rec = {"kind": "train", "step": step, "loss": mb.losses[-1], "token_accuracy": acc,
                           "lr": float(mb.sched.get_last_lr()[0]), "steps_per_s": rate}  # fmt: skip
                    if gnorm is not None:
                        rec["grad_norm"] = float(gnorm[j])
                    mb.log.write(rec)
            if is_eval:
                t_eval = time.perf_counter()
                for mb in active:
                    mb.final = evaluate(mb.model, evalset, task.chance, batch_size=tc.eval_batch_size, device=device,
                                        amp=amp, prefix=prefix)  # fmt: skip
                    rec = {"kind": "eval", "step": step, "loss": mb.final.loss, "accuracy": mb.final.accuracy,
                           "scaled_accuracy": mb.final.scaled_accuracy,
                           "token_accuracy": mb.final.token_accuracy}  # fmt: skip
                    mb.history.append(rec)
                    mb.log.write({**rec, "per_length": mb.final.to_dict()["per_length"]})
                t_aside += time.perf_counter() - t_eval
                t_last += time.perf_counter() - t_eval
            if is_ckpt:
                t = time.perf_counter()
                for mb in active:
                    mb.save(step)
                t_aside += time.perf_counter() - t
                t_last += time.perf_counter() - t
            for mb in active:
                mb.step = step
    finally:
        for mb in members:
            mb.close()
        checks.close()
    t_end = time.perf_counter()
    out = []
    for mb in members:
        steps_run = mb.step - first_step
        rate = steps_run / max(t_end - t_loop - t_aside, 1e-9) if steps_run else None
        out.append(MemberResult(mb.model, mb.step, None if mb.diverged else mb.final, mb.history, mb.losses,
                                t_end - t0, mb.out if write_files else None, steps_run=steps_run, steps_per_s=rate,
                                resumed_from=mb.resumed_from,
                                checkpoint=mb.ckpts.last_saved if mb.ckpts is not None else None,
                                diverged=mb.diverged))  # fmt: skip
    return out
