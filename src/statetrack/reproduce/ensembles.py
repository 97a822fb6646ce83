"""The sweep's ensembles: the pending runs of one (model, task) cell that differ only in lr and seed become one job,
trained as one batched model (:func:`statetrack.train.ensemble.train_ensemble`); each member's result is written
by :func:`.worker.execute`, under its own key, exactly as its single run's would be.

Default: on for GPU sweeps, off on the CPU (``reproduce(..., ensemble=None)``; ``--ensemble`` / ``--no-ensemble``).
A group whose ensemble cannot run (members resuming from checkpoints at different steps, a failure of the
ensemble itself) falls back to training its members one by one, so a group never loses a run.
"""

from __future__ import annotations

import time
import traceback

from statetrack.train import ExperimentConfig
from statetrack.train.ensemble import ENSEMBLE_MIXERS, ensemble_cell, train_ensemble

from . import worker
from .cache import run_dir


def group_jobs(jobs: list[dict], max_members: int = 0) -> list[dict]:
    """``jobs`` (worker jobs, in the order to run) with those of one cell merged: a group job is
    {"members": [job, ...], "key", "labels", "out", "device"} (key: ``ensemble-`` and its first member's key), at
    most ``max_members`` members each (0: no limit), placed where its first member was. Runs of mixers without a
    tested ensemble (:data:`~statetrack.train.ensemble.ENSEMBLE_MIXERS`) and lone runs stay single jobs."""
    cells: dict[tuple, list[dict]] = {}
    for i, job in enumerate(jobs):
        if job["config"]["model"]["mixer"] not in ENSEMBLE_MIXERS:
            cell = ("single", i)
        else:  # the config but lr and seed, and the job's options (precision, compile, ...)
            opts = tuple(sorted((k, str(v)) for k, v in job.items() if k not in ("key", "config", "labels")))
            cell = (ensemble_cell(job["config"]), opts)
        cells.setdefault(cell, []).append(job)
    pos = {id(j): i for i, j in enumerate(jobs)}
    groups = [
        c[j : j + (max_members or len(c))] for c in cells.values() for j in range(0, len(c), max_members or len(c))
    ]
    groups.sort(key=lambda g: pos[id(g[0])])
    out = []
    for members in groups:
        if len(members) == 1:
            out.append(members[0])
            continue
        first = members[0]
        labels = {**first["labels"], "lr": [m["labels"]["lr"] for m in members],
                  "seed": [m["labels"]["seed"] for m in members]}  # fmt: skip
        out.append({"key": f"ensemble-{first['key']}", "members": members, "labels": labels, "out": first["out"],
                    "device": first.get("device")})  # fmt: skip
    return out


def execute_group(job: dict) -> list:
    """Train a group job's members as one ensemble and write each one's result; returns, per member in order, its
    result dict, or the exception its run ended with (members trained one by one after a fallback)."""
    t0 = time.perf_counter()
    members = job["members"]
    device = job.get("device") or worker._WORKER["device"] or "cpu"
    threads = job.get("threads") or worker._WORKER["threads"]
    mjobs = [{**m, "device": device, "threads": threads} for m in members]
    cfgs = []
    for m in mjobs:
        cfg = ExperimentConfig.from_dict(m["config"])
        folder = run_dir(m["out"], m["key"])
        folder.mkdir(parents=True, exist_ok=True)
        cfg.train.device, cfg.train.out_dir, cfg.train.progress = device, str(folder), False
        if threads:
            cfg.train.threads = int(threads)
        cfg.train.deterministic = bool(m.get("deterministic", True))  # as worker.execute
        cfgs.append(cfg)
    resume = any(worker.CHECKPOINT in {p.name for p in cfg.out_dir.iterdir()} for cfg in cfgs)
    try:
        trained = train_ensemble(cfgs, resume=resume)
    except Exception:  # noqa: BLE001 - the members still run, one by one (the single path's own errors then)
        note = traceback.format_exc(limit=3).strip().splitlines()[-1]
        print(f"ensemble of {len(members)} runs ({job['labels']['model']}, {job['labels']['task']}) fell back to "
              f"single runs: {note}", flush=True)  # fmt: skip
        trained = None
    results: list = []
    for m, res in zip(mjobs, trained or [None] * len(mjobs), strict=True):
        try:
            if res is None:
                results.append(worker.execute(m))
            else:
                results.append(worker.execute({**m, "t0": t0}, trained=_given(res)))
        except Exception as e:  # noqa: BLE001 - reported per run by the sweep
            results.append(e)
    return results


def _given(res):
    """The ``trained`` callable of :func:`.worker.execute` for a member already trained: its result, or the single
    run's FloatingPointError when its loss became non-finite."""

    def trained(cfg):
        if res.diverged:
            raise FloatingPointError(res.diverged)
        return res

    return trained
