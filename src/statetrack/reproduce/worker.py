"""One run, in a worker process (or in the calling process): train, evaluate, write ``result.json`` atomically.

Worker processes are started with ``spawn`` (CUDA cannot be forked) and each takes one device from the list the
sweep hands out, round-robin, so several workers share a GPU and all visible GPUs are used.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import platform
import signal
import sys
import time

import torch

from statetrack.atomic import atomic_write_json
from statetrack.tasks import get_task
from statetrack.train import CHECKPOINT, ExperimentConfig, eval_batch, evaluate, remove_checkpoints, train
from statetrack.train.determinism import set_process_env

from .cache import KEY_VERSION, RESULT, run_dir
from .provenance import source_tree

_WORKER: dict = {"device": None, "threads": 0}


def init_worker(counter, devices: list[str], threads: int) -> None:
    """Pool initializer: take the next device (round-robin over ``devices``) and set the torch thread count."""
    with counter.get_lock():
        i = counter.value
        counter.value += 1
    dev = devices[i % len(devices)]
    _die_with_parent()
    set_process_env()  # before CUDA starts here: cuBLAS reads its workspace setting when its handle is made
    _WORKER.update(device=dev, threads=threads)
    if threads > 0:
        torch.set_num_threads(threads)
    if dev.startswith("cuda"):
        torch.cuda.set_device(torch.device(dev))


def _die_with_parent() -> None:
    """Linux: have the kernel end this worker when the sweep's process dies, however it dies (a killed sweep
    would otherwise leave its workers training, unseen, until their runs end). Strictly, when the thread that
    started the worker ends: the pool starts its workers from the thread that submits, the sweep's main thread."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # the parent died before the call above took effect
        os._exit(1)


def device_name(dev: str) -> str:
    d = torch.device(dev)
    if d.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(d)})"
    return f"cpu ({platform.processor() or platform.machine()})"


def execute(job: dict, trained=None) -> dict:
    """Train and evaluate the run ``job`` and write its result; return the result.

    job keys: key, config (ExperimentConfig dict), precision, labels, experiment, out (sweep folder), device
    ("cpu", "cuda:N"; None = this worker's device), threads, keep_checkpoint, compile (torch.compile the model on
    a GPU: the same run, faster once compiled; not part of the key), deterministic (``train.deterministic``,
    default true: bitwise the same losses for the same key on the same GPU and software; not part of the key).
    A run whose loss becomes non-finite is a finished run with status "diverged" (it would diverge again).
    A run killed midway continues from its last checkpoint when rerun.
    trained: cfg -> TrainResult, a run already trained (an ensemble's member: reproduce.ensembles, which also
    sets job["t0"], when its training began), used instead of training it here.
    """
    t0 = job.get("t0") or time.perf_counter()
    folder = run_dir(job["out"], job["key"])
    folder.mkdir(parents=True, exist_ok=True)
    cfg = ExperimentConfig.from_dict(job["config"])
    device = job.get("device") or _WORKER["device"] or "cpu"
    threads = job.get("threads") or _WORKER["threads"]
    cfg.train.device, cfg.train.out_dir, cfg.train.progress = device, str(folder), False
    if threads:
        cfg.train.threads = int(threads)
    cfg.train.compile = bool(job.get("compile")) and device.startswith("cuda")
    cfg.train.deterministic = bool(job.get("deterministic", True))
    ckpt = folder / CHECKPOINT
    status, error, final, history, steps = "ok", "", None, [], 0
    try:
        res = train(cfg, resume=ckpt.is_file()) if trained is None else trained(cfg)
        final, history, steps = res.final, res.history, res.step
        if final is None:  # resumed from a checkpoint written at the last step, before the result was
            task = get_task(cfg.train.task, **cfg.train.task_args)
            final = evaluate(res.model, eval_batch(cfg, task), task.chance, batch_size=cfg.train.eval_batch_size,
                             device=torch.device(device), amp=job["precision"] == "bf16",
                             prefix=task.kind == "group")  # fmt: skip
    except FloatingPointError as e:
        status, error = "diverged", str(e)
    result = {
        "key": job["key"],
        "key_version": KEY_VERSION,
        "experiment": job["experiment"],
        "labels": job["labels"],
        "status": status,
        "error": error,
        "steps": steps,
        "final": final.to_dict() if final is not None else None,
        "history": history,
        "precision": job["precision"],
        "deterministic": cfg.train.deterministic,
        "device": device_name(device),
        "host": platform.node(),
        "pid": os.getpid(),
        "wall_seconds": round(time.perf_counter() - t0, 3),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "torch": torch.__version__,
        "source_sha256": source_tree()["sha256"],  # the code that trained it (reports flag mixed trees)
        "config": job["config"],
    }
    atomic_write_json(folder / RESULT, result)
    if not job.get("keep_checkpoint", False):
        remove_checkpoints(folder)  # the result is safe; checkpoints of hundreds of runs would fill the disk
    return result
