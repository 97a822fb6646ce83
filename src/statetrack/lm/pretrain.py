"""Language-model pretraining on torch.distributed: one process, N CPU processes (gloo) or N GPUs (nccl), the
same code (``statetrack pretrain CONFIG``, under ``torchrun --nproc-per-node N`` for more than one).

A step: ``grad_accum`` micro-batches of ``batch_size`` packed rows of ``seq_len`` tokens per rank (documents
marked by restarting position_ids, so no state crosses a document), each loss / grad_accum backpropagated;
the global gradient norm clipped; AdamW (decay on matrices only; fused on CUDA); the warm-up + cosine schedule.
More than one process: FSDP2 (see :mod:`.distributed`). Checkpoints: DCP, atomic, resharded on load
(:mod:`.checkpoint`). Outputs: :mod:`.observe`; a finished run's model: ``<out_dir>/model`` (:mod:`.export`).
FLOPs and MFU: :mod:`.flops`.

Exact resumption: the model is initialised under ``train.seed``; the checkpoint holds the model, the optimiser,
the scheduler, every rank's data-loader position and RNG states; so a run stopped (SIGINT/SIGTERM: a checkpoint,
then exit) or killed (the last checkpoint, at most ``ckpt_every`` steps back) and resumed with ``resume=True``
logs the very losses the uninterrupted run does, on the CPU (on GPUs up to the kernels' own determinism).
"""

from __future__ import annotations

import contextlib
import importlib
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from statetrack.train.checkpoint import rng_states, set_rng_states
from statetrack.train.device import CheckPhases, value_check_phases
from statetrack.train.metrics_log import METRICS
from statetrack.train.schedule import make_scheduler
from statetrack.train.signals import StopSignals

from .checkpoint import Checkpointer
from .distributed import Dist, parallelize
from .export import MODEL_DIR, dataset_tokenizer, export_model
from .flops import flops_per_token, mfu, peak_flops
from .observe import LOSS_PNG, RunLog, invocation_record, plot_losses, write_invocation
from .pretrain_config import PretrainConfig, dump_pretrain_config

CHECKPOINTS = "checkpoints"
BATCH_KEYS = ("input_ids", "labels", "position_ids")


@dataclass
class PretrainResult:
    """What a run (this invocation) did: its last step, every step's loss (this invocation's), where its
    files are, the checkpoint it saved last, the Hugging Face folder of the finished model (``model_dir``, None
    when the run stopped early), which signal stopped it (None: it ran to ``train.steps``), and the
    trained model (sharded as it was trained: with FSDP its parameters are DTensors)."""

    step: int
    losses: list[float] = field(default_factory=list)
    out_dir: Path | None = None
    checkpoint: Path | None = None
    stopped_by: str | None = None
    resumed_from: Path | None = None
    steps_run: int = 0
    wall_seconds: float = 0.0
    tokens_per_s: float | None = None
    eval_loss: float | None = None
    model_dir: Path | None = None
    model: nn.Module | None = field(default=None, repr=False)


def lm_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on the matrices (linear and embedding weights) only: not on norms, biases, convolution
    kernels or a mixer's own constants (Mamba's A_log and D, decay rates), which decay would pull to zero."""
    matrices = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear | nn.Embedding)}
    decay, rest, seen = [], [], set()
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            (decay if id(p) in matrices else rest).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _data_api(data_api):
    return data_api if data_api is not None else importlib.import_module("statetrack.lm.data")


def resolve_data(cfg: PretrainConfig, dist_: Dist, data, vocab_size: int, max_seq_len: int | None = None) -> Path:
    """The token-shard folder of ``train.data`` (a builtin corpus is prepared once, by rank 0), checked against
    the model's vocabulary and the sequence length: a ValueError naming the problem before any step."""
    tc = cfg.train
    where = str(tc.data)
    if where.startswith("builtin:"):
        cache = Path(tc.data_cache).expanduser() if tc.data_cache else Path.home() / ".cache" / "statetrack" / "data"
        tok = Path(str(tc.tokenizer)).name.replace(":", "_") or "tokenizer"
        folder = cache / f"{where.split(':', 1)[1]}-{tok}-holdout{tc.holdout:g}"
        err = None
        if dist_.is_main and not (folder / "meta.json").is_file():
            try:
                data.prepare([where], tc.tokenizer, folder, split_ratio=tc.holdout)
            except (ValueError, FileNotFoundError) as e:
                err = str(e)
        err = dist_.broadcast(err)
        if err is not None:
            raise ValueError(f"train.data = {where!r}: {err}")
        path = folder
    else:
        path = Path(where).expanduser()
        if not path.exists():
            raise ValueError(f"train.data: {str(path)!r} does not exist (a folder of `statetrack data prepare`, "
                             "or builtin:code / builtin:prose)")  # fmt: skip
    data.check_data(path, vocab_size, tc.seq_len, max_seq_len=max_seq_len, batch_size=tc.batch_size,
                    world_size=dist_.world_size)  # fmt: skip
    return path


def validation_problem(data, path: Path, cfg: PretrainConfig, world_size: int) -> str | None:
    """Why the dataset's held-out split cannot be evaluated on (missing, empty, under one global batch), or None."""
    tc = cfg.train
    try:
        data.check_data(path, 1 << 62, tc.seq_len, batch_size=tc.batch_size, world_size=world_size,
                        splits=("validation",))  # fmt: skip
    except ValueError as e:
        return str(e)
    return None


def _loader(data, path: Path, split: str, cfg: PretrainConfig, dist_: Dist, seed: int, shuffle: bool = True):
    tc = cfg.train
    return data.PackedLoader(data.TokenShards(path, split), tc.batch_size, tc.seq_len, rank=dist_.rank,
                             world_size=dist_.world_size, seed=seed, shuffle=shuffle)  # fmt: skip


def _resolved(model: dict) -> dict:
    """A model section with every default written out (what the model is, however the file spelled it)."""
    from statetrack.models import StateTrackConfig

    d = StateTrackConfig(**model).to_dict()
    d.pop("transformers_version", None)
    return d


def _use(setting: str, default: bool) -> bool:
    return setting == "on" or (setting == "auto" and default)


def pretrain(
    cfg: PretrainConfig,
    *,
    resume: bool | str | Path = False,
    on_step: Callable[[int], None] | None = None,
    data_api=None,
) -> PretrainResult:
    """Run (or continue) the pretraining experiment ``cfg`` in this process (one rank of a torchrun job, or a
    world of one).

    Args:
        resume: True: continue from the newest good checkpoint in ``<out_dir>/checkpoints`` (from step 0 when
            there is none); a path: from that checkpoint folder.
        on_step: called with the step number after each optimiser step (tests use it to stop a run).
        data_api: the module with TokenShards, PackedLoader, check_data and prepare (default statetrack.lm.data).
    """
    t_start = time.perf_counter()
    cfg.validate()
    tc = cfg.train
    data = _data_api(data_api)
    model_cfg = cfg.model_config()
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    dist_ = Dist.setup(tc.device)
    try:
        return _run(cfg, model_cfg, dist_, data, resume, on_step, t_start)
    finally:
        dist_.close()


def uses_bf16(tc, device: torch.device) -> bool:
    """Whether the run computes in bf16 (train.amp: "bf16", or "auto" on CUDA; fp32 otherwise)."""
    return tc.amp == "bf16" or (tc.amp == "auto" and device.type == "cuda")


def _run(cfg, model_cfg, dist_: Dist, data, resume, on_step, t_start) -> PretrainResult:
    tc, dev, world = cfg.train, dist_.device, dist_.world_size
    path = resolve_data(cfg, dist_, data, model_cfg.vocab_size, getattr(model_cfg, "max_position_embeddings", None))
    no_eval = validation_problem(data, path, cfg, world)
    can_eval = no_eval is None
    fsdp = _use(tc.fsdp, world > 1)
    if not fsdp and world > 1:
        raise ValueError(f"train.fsdp = 'off' needs one process, got {world}: the model is sharded over ranks")
    bf16 = uses_bf16(tc, dev)
    out = cfg.out_dir

    from statetrack.models import StateTrackForCausalLM

    torch.manual_seed(tc.seed)
    with torch.device(dev):
        model = StateTrackForCausalLM(model_cfg)
    parallelize(model, dist_, fsdp=fsdp, bf16=bf16, compile=tc.compile,
                activation_checkpointing=tc.activation_checkpointing)  # fmt: skip
    model.train()
    opt = torch.optim.AdamW(lm_param_groups(model, tc.weight_decay), lr=tc.lr, betas=(tc.beta1, tc.beta2),
                            eps=tc.eps, fused=dev.type == "cuda")  # fmt: skip
    sched = make_scheduler(opt, tc.steps, tc.warmup_steps, tc.lr, tc.min_lr)
    loader = _loader(data, path, "train", cfg, dist_, tc.seed)

    ckpt = Checkpointer(out / CHECKPOINTS, dist_.rank, world, dist_.group, keep_last=tc.keep_last,
                        async_save=_use(tc.async_checkpoint, dev.type == "cuda"))  # fmt: skip
    step, resumed_from = 0, None
    if resume:
        found = ckpt.load_latest(model, opt, None if resume is True else resume)
        if found is not None:
            resumed_from, trainer, rank_state = found
            theirs, ours = _resolved(trainer["config"]["model"]), _resolved(cfg.model)
            if theirs != ours:
                diff = {k: (theirs.get(k), ours.get(k)) for k in sorted(set(theirs) | set(ours))
                        if theirs.get(k) != ours.get(k)}  # fmt: skip
                raise ValueError(f"cannot resume from {resumed_from}: its model differs from this config's "
                                 f"(key: (checkpoint, config)): {diff}")  # fmt: skip
            step = int(trainer["step"])
            sched.load_state_dict(trainer["scheduler"])
            if rank_state is not None:
                loader.load_state_dict(rank_state["loader"])
                set_rng_states(rank_state["rng"])
            else:  # another number of ranks: the loader's position carries over if the global batch is the same
                try:
                    loader.load_state_dict(trainer["loader"])
                    how = "the data continues where it was"
                except ValueError as e:
                    loader = _loader(data, path, "train", cfg, dist_, tc.seed + step)
                    how = f"the data order starts afresh with seed {tc.seed + step} ({e})"
                if dist_.is_main:
                    print(f"resuming with {world} processes a checkpoint of {trainer['world_size']}: the model and "
                          f"optimiser are resharded; {how}", flush=True)  # fmt: skip
    ckpt.clean_partials()
    dist_.barrier()

    if dist_.is_main:
        record = invocation_record(world, dev, None if resumed_from is None else str(resumed_from))
        write_invocation(out, dump_pretrain_config(cfg), record)
    log = RunLog(out, dist_.is_main, step, tc.steps, cfg.name, tc.progress)
    if dist_.is_main:
        if resumed_from is not None:
            log.note(f"resuming from step {step} ({resumed_from})")
        elif resume:
            log.note(f"no checkpoint in {out / CHECKPOINTS}: starting from step 0")
        if no_eval is not None:
            log.note(f"no held-out evaluation: {no_eval}")
    try:
        per_token = flops_per_token(model_cfg, tc.seq_len).training
    except ValueError as e:
        per_token = None
        log.note(f"MFU not shown: {e}")
    peak = peak_flops(dev)
    tokens_per_step = tc.batch_size * tc.seq_len * tc.grad_accum * world
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16 and not fsdp)

    def trainer_state():
        return {"scheduler": sched.state_dict(), "config": cfg.to_dict(), "loader": loader.state_dict()}

    def rank_state():
        return {"loader": loader.state_dict(), "rng": rng_states()}

    def save(blocking: bool) -> Path:
        return ckpt.save(step, model, opt, trainer_state(), rank_state(), blocking=blocking)

    first, losses, pending, norms = step, [], [], []
    t_log, s_log, rate, eval_loss = time.perf_counter(), step, None, None
    last_ckpt, stopped_by = None, None
    batches = iter(loader)
    try:
        with contextlib.ExitStack() as checks:
            phases = CheckPhases(value_check_phases(tc.value_checks, dev, graphed=False), checks)
            signals = checks.enter_context(StopSignals())  # SIGINT/SIGTERM: a flag; later ones ignored (torchrun)
            while step < tc.steps:
                total = torch.zeros((), device=dev)
                for _ in range(tc.grad_accum):
                    b = next(batches)
                    ids, labels, pos = (b[k].to(dev, non_blocking=True) for k in BATCH_KEYS)
                    with autocast:
                        loss = model(input_ids=ids, labels=labels, position_ids=pos).loss
                    (loss / tc.grad_accum).backward()
                    total += loss.detach().float()
                clip = tc.grad_clip if tc.grad_clip > 0 else math.inf  # inf: the norm, for the log
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                if hasattr(norm, "full_tensor"):
                    norm = norm.full_tensor()
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                phases.stepped()  # train.value_checks
                pending.append(total / tc.grad_accum)
                norms.append(norm.detach())
                if on_step is not None:
                    on_step(step)
                stop = dist_.max(signals.received or 0)  # the signal any rank got (0: none): all stop here
                at_ckpt = (tc.ckpt_every and step % tc.ckpt_every == 0) or step == tc.steps
                at_eval = (tc.eval_every and step % tc.eval_every == 0) or step == tc.steps
                if step % tc.log_every == 0 or step == tc.steps or stop or at_ckpt or at_eval:
                    window = dist_.mean(torch.stack(pending).cpu())
                    for i, v in enumerate(window.tolist()):
                        if not math.isfinite(v):
                            raise FloatingPointError(f"the loss became {v} at step {step - len(pending) + i + 1}; "
                                                     "lower train.lr or set train.grad_clip")  # fmt: skip
                    losses.extend(window.tolist())
                    now = time.perf_counter()
                    rate = (step - s_log) * tokens_per_step / max(now - t_log, 1e-9)
                    util = mfu(rate, per_token, peak, world) if per_token is not None else None
                    rec = {"kind": "train", "step": step, "loss": float(window.mean()),
                           "lr": float(sched.get_last_lr()[0]), "grad_norm": float(torch.stack(norms).cpu()[-1]),
                           "tokens": step * tokens_per_step, "tokens_per_s": rate, "mfu": util}  # fmt: skip
                    if dev.type == "cuda":  # this rank's peak so far (the allocator's count: no sync)
                        rec["peak_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
                    log.write(rec)
                    log.advance(step - s_log, {"loss": f"{rec['loss']:.4f}", "tok/s": f"{rate:,.0f}",
                                               "mfu": "-" if util is None else f"{util:.1%}"})  # fmt: skip
                    t_log, s_log, pending, norms = now, step, [], []
                if at_eval and can_eval and not stop:
                    eval_loss = evaluate(model, _loader(data, path, "validation", cfg, dist_, 0, shuffle=False), dist_,
                                         tc.eval_batches, autocast)  # fmt: skip
                    log.write({"kind": "eval", "step": step, "loss": eval_loss, "ppl": math.exp(min(eval_loss, 50))})
                    log.note(f"[{cfg.name}] step {step}: held-out loss {eval_loss:.4f}")
                    t_log = time.perf_counter()  # the rate counts training only
                if stop:
                    stopped_by = signal.Signals(stop).name
                    last_ckpt = save(blocking=True)
                    break
                if at_ckpt:
                    last_ckpt = save(blocking=step == tc.steps)
                    t_log = time.perf_counter()
            ckpt.wait()
    except BaseException:
        ckpt.drain()  # a checkpoint being written when the run failed is still a good one
        raise
    finally:
        log.close()
    model_dir = None
    if stopped_by is None:  # the run is complete: its model as a Hugging Face folder, for generate / ppl / lm-eval
        model_dir = export_model(model, model_cfg, out / MODEL_DIR, dist_.is_main, dataset_tokenizer(path))
    if dist_.is_main:
        plot_losses(out / METRICS, out / LOSS_PNG, title=cfg.name)
    wall = time.perf_counter() - t_start
    return PretrainResult(step=step, losses=losses, out_dir=out, checkpoint=last_ckpt, stopped_by=stopped_by,
                          resumed_from=resumed_from, steps_run=step - first, wall_seconds=wall, tokens_per_s=rate,
                          eval_loss=eval_loss, model_dir=model_dir, model=model)  # fmt: skip


@torch.no_grad()
def evaluate(model, loader, dist_: Dist, batches: int, autocast) -> float:
    """The mean loss over the first ``batches`` batches of ``loader`` per rank (at most one pass: the held-out
    split unshuffled, so the same batches at every evaluation), averaged over ranks. The model stays in training
    mode (no dropout here; the fused loss then never forms the logits)."""
    dev = dist_.device
    vals = []
    batches = min(batches, getattr(loader, "batches_per_epoch", batches))
    for i, b in enumerate(loader):
        if i >= batches:
            break
        ids, labels, pos = (b[k].to(dev) for k in BATCH_KEYS)
        with autocast:
            vals.append(model(input_ids=ids, labels=labels, position_ids=pos).loss.float())
    if not vals:
        return float("nan")
    return float(dist_.mean(torch.stack(vals).mean().cpu()[None])[0])
