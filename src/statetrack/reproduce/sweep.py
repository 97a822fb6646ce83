"""Run many runs at once: a pool of spawned worker processes, several per GPU, over all visible GPUs.

Cached runs (a valid ``result.json`` under ``--out/runs/<key>/``) are skipped; the rest are handed to the pool
in plan order. The progress view shows runs done / running / left, failures and an ETA. A run that raises is
reported (``error.txt`` in its folder) and left for the next invocation; the others go on.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import torch

from statetrack.atomic import atomic_write_text

from . import ensembles, worker
from .cache import run_dir


@dataclass
class SweepStats:
    """What a sweep did: runs trained now, runs that failed (key -> message), total wall seconds."""

    trained: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    wall_seconds: float = 0.0


def resolve_devices(device: str, visible: bool = True) -> list[str]:
    """``auto`` = every visible GPU (else the CPU); ``cuda`` = every visible GPU; ``cuda:0,2`` = those;
    ``cpu`` = the CPU.

    visible=False (writing reports only, nothing trains): ``cuda``/``cuda:I,J`` are taken as named even where no
    GPU is visible (``cuda`` as ``cuda:0``), so that runs made on GPUs are found by their bf16 keys on any machine.
    """
    n = torch.cuda.device_count()
    if device in ("auto", "cuda"):
        if n == 0:
            if device == "cuda":
                if not visible:
                    return ["cuda:0"]
                raise ValueError("--device cuda but no GPU is visible; use --device cpu")
            return ["cpu"]
        return [f"cuda:{i}" for i in range(n)]
    if device.startswith("cuda:"):
        ids = [s.strip() for s in device[5:].split(",") if s.strip()]
        for i in ids:
            if not i.isdigit() or (visible and int(i) >= n):
                raise ValueError(f"--device {device}: GPU {i!r} is not one of the {n} visible GPUs")
        return [f"cuda:{i}" for i in ids]
    if device == "cpu":
        return ["cpu"]
    raise ValueError(f"--device must be auto, cpu, cuda or cuda:I[,J...], got {device!r}")


def default_workers(devices: list[str], per_gpu: int) -> int:
    """``per_gpu`` runs on each GPU; on a CPU one run at a time (a run uses all cores given to it)."""
    return per_gpu * len(devices) if devices[0].startswith("cuda") else 1


def threads_per_worker(devices: list[str], workers: int) -> int:
    """CPU threads of each worker: 1 for CPU runs (these models are too small to split their ops, and idle
    OpenMP threads slow every step down on a shared machine; use --workers for parallel runs), up to 2 for
    GPU runs (they only feed the GPU)."""
    cores = os.cpu_count() or 1
    if devices[0] == "cpu":
        return 1
    return max(1, min(2, cores // max(workers, 1)))


def requeue_after(exc: BaseException | None, key: str, requeued: set[str]) -> bool:
    """Whether a run that raised ``exc`` goes to the back of the queue (once): a CUDA out-of-memory error is
    usually the other runs' memory, not this run's, and there are fewer of them once the queue drains."""
    oom = exc is not None and (isinstance(exc, torch.OutOfMemoryError) or type(exc).__name__ == "OutOfMemoryError")
    if not oom or key in requeued:
        return False
    requeued.add(key)
    return True


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel the queued runs and end the running ones now: an interrupted sweep must stop at once (their
    checkpoints are kept; a clean exit would first wait for every running run to finish)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
    else:  # older Pythons: the executor's own process table (shutdown() drops it, so read it first)
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def run_jobs(jobs: list[dict], *, devices: list[str], workers: int, total: int, progress: bool = True,
             describe=lambda job, res: "") -> SweepStats:  # fmt: skip
    """Execute ``jobs`` (dicts for :func:`worker.execute`, or group jobs of :func:`ensembles.group_jobs`, trained
    as one ensemble each) with ``workers`` processes (<= 1: in this process).

    total: all runs of the experiment (cached ones count as done in the progress view).
    describe: (job, result) -> a short line printed when a run finishes.
    """
    from tqdm.auto import tqdm

    stats = SweepStats()
    t0 = time.perf_counter()
    done0 = total - sum(len(j.get("members", [j])) for j in jobs)  # a group job holds several runs
    bar = tqdm(total=total, initial=done0, unit="run", dynamic_ncols=True, disable=not progress, smoothing=0.0)
    threads = threads_per_worker(devices, workers)

    def finished(job, res=None, exc=None):
        if exc is None:
            stats.trained.append(job["key"])
            msg = describe(job, res)
        else:
            text = "".join(traceback.format_exception(exc))
            stats.failed[job["key"]] = f"{type(exc).__name__}: {exc}"
            atomic_write_text(run_dir(job["out"], job["key"]) / "error.txt", text)
            msg = f"FAILED {job['labels']}: {type(exc).__name__}: {exc}"
        bar.update(1)
        if msg:
            bar.write(msg)

    def group_finished(job, results):
        for member, r in zip(job["members"], results, strict=True):
            finished(member, exc=r) if isinstance(r, BaseException) else finished(member, r)

    def show(running: int):
        left = total - bar.n - running
        bar.set_postfix_str(f"running {running}, left {left}, failed {len(stats.failed)}", refresh=True)

    try:
        if workers <= 1:
            for job in jobs:
                job = {**job, "device": job.get("device") or devices[0], "threads": threads}
                show(1)
                if "members" in job:
                    group_finished(job, ensembles.execute_group(job))
                    continue
                try:
                    res = worker.execute(job)
                except Exception as e:  # a failing run must not stop the sweep; it is retried next time
                    finished(job, exc=e)
                else:
                    finished(job, res)
        else:
            counter = mp.get_context("spawn").Value("i", 0)
            with ProcessPoolExecutor(
                max_workers=workers,
                mp_context=mp.get_context("spawn"),
                initializer=worker.init_worker,
                initargs=(counter, devices, threads),
            ) as pool:
                futs = {pool.submit(ensembles.execute_group if "members" in job else worker.execute, job): job
                        for job in jobs}  # fmt: skip
                pending, requeued = set(futs), set()
                try:
                    while pending:
                        show(min(workers, len(pending)))
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for f in done:
                            exc, job = f.exception(), futs.pop(f)
                            if isinstance(exc, BrokenProcessPool):
                                raise exc
                            if "members" in job:  # its members' failures come back as values
                                if exc is not None:
                                    group_finished(job, [exc] * len(job["members"]))
                                else:
                                    group_finished(job, f.result())
                                continue
                            if requeue_after(exc, job["key"], requeued):
                                bar.write(f"out of GPU memory: {job['labels']} runs again after the queued runs")
                                again = pool.submit(worker.execute, job)
                                futs[again] = job
                                pending.add(again)
                                continue
                            finished(job, None if exc else f.result(), exc)
                except BaseException:
                    stop_workers(pool)
                    raise
    except (KeyboardInterrupt, BrokenProcessPool) as e:
        bar.write(f"sweep stopped ({type(e).__name__}); finished runs are kept, rerun to continue")
        if isinstance(e, KeyboardInterrupt):
            raise
    finally:
        show(0)
        bar.close()
        stats.wall_seconds = time.perf_counter() - t0
    return stats
