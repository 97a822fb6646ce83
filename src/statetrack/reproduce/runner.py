"""`reproduce(experiment, budget, out)`: plan the runs, train the missing ones, write tables, figures and JSON.

Output layout under ``out``::

    runs/<key>/result.json     one finished run (raw per-run JSON; the cache), plus its metrics.jsonl, config.yaml
    <experiment>/<experiment>.md   the table: ours and the paper's value in each cell, misses, claims
    <experiment>/summary.json  the cells, the chosen lrs, the claims
    <experiment>/runs.json     every run's result of this experiment, in plan order
    <experiment>/*.png         figures (Figure 6 in table3/ only: table5 has the same runs)
    <experiment>/provenance.json, command.txt (and paper_numbers.json once, in OUT)
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from statetrack.atomic import atomic_write_json, atomic_write_text
from statetrack.tasks import get_task
from statetrack.train.determinism import set_process_env

from . import aggregate, plots, provenance, report
from .budgets import get_budget
from .cache import load_result
from .ensembles import group_jobs
from .experiments import (
    FIGURE4_TASKS,
    FIGURE8_TASKS,
    RunSpec,
    build_runs,
    experiment_plan,
    only_slug,
    only_text,
    parse_only,  # fmt: skip
    select_runs,
)
from .mps import mps_daemon
from .paper_numbers import CLAIMS, TABLE3_COLUMNS, TABLE3_MODELS
from .paper_numbers import as_dict as paper_dict
from .sweep import SweepStats, default_workers, resolve_devices, run_jobs


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """ "I/N" -> (I, N), 0 <= I < N: this invocation runs every N-th run of the plan, from the I-th."""
    if not text:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {text}: need 0 <= I < N")
    return i, n


def plan(experiment: str, budget_name: str, device: str = "auto", steps: int | None = None, report_only: bool = False,
         only: str | None = None):  # fmt: skip
    """(runs, budget, devices) of an invocation, without running anything (report_only: see resolve_devices).

    only: a slice of the grid (``--only`` text, :func:`experiments.parse_only`): the runs of the full plan that
    match, with the same cache keys."""
    budget = get_budget(experiment, budget_name, steps)
    devices = resolve_devices(device, visible=not report_only)
    runs = build_runs(experiment, budget, device_type="cuda" if devices[0].startswith("cuda") else "cpu")
    return select_runs(runs, parse_only(only, runs)), budget, devices


# rough cost of a step relative to the parallel-scan mixers: sLSTM and the full-matrix RNN loop over time in Python
_MIXER_COST = {"slstm": 4.0, "full_matrix_rnn": 4.0, "lstm": 2.0, "mlstm": 1.5}


def _cost(r: RunSpec) -> float:
    """Estimated run time (arbitrary units): the sweep starts the longest runs first, so that no long run is
    left alone at the end while the other workers idle."""
    c = r.config
    return c.train.steps * c.train.batch_size * c.model.n_layers * _MIXER_COST.get(c.model.mixer, 1.0)


def _describe(job, res) -> str:
    lab = job["labels"]
    if res["status"] != "ok":
        val = res["status"]
    elif res["final"] and res["final"].get("prefix_accuracy"):
        curve = aggregate.prefix_curve(res)
        val = f"L_0.9 {aggregate.l_tau(curve)}, prefix acc at {max(curve)}: {curve[max(curve)]:.3f}"
    else:
        val = f"scaled acc {res['final']['scaled_accuracy']:.3f}"
    return (f"{lab['task']:<22} {lab['model']:<22} lr={lab['lr']:<7g} seed={lab['seed']}: {val} "
            f"({res['wall_seconds']:.0f} s)")  # fmt: skip


def reproduce(experiment: str, budget_name: str, out: str | Path, *, device: str = "auto", workers: int | None = None,
              per_gpu: int = 8, shard: str | None = None, report_only: bool = False, steps: int | None = None,
              progress: bool = True, keep_checkpoints: bool = False, argv: list[str] | None = None,
              log=print, compile_model: bool = False, mps: bool = False, only: str | None = None,
              ensemble: bool | None = None, ensemble_size: int = 0,
              deterministic: bool = True) -> dict:  # fmt: skip
    """Run (what is not cached of) ``experiment`` at ``budget_name`` under ``out`` and write its outputs.

    only: train and report a slice of the grid (``--only model=A|B,task=x``; same cache keys as the full
    sweep); its report goes to ``out/<experiment>-only-<slice>/`` so that the full table's is kept.
    ensemble: train the runs of a cell that differ only in lr and seed as one batched model (reproduce.ensembles;
    each run's result the same as alone, to fp32 rounding); None: on for GPUs, off on the CPU. ensemble_size: at
    most this many runs per ensemble (0: a whole cell).
    deterministic: train each run with ``train.deterministic`` (bitwise the same result for the same key on the
    same GPU and software; its cost in docs/reproduce.md); not part of the key, recorded in each result.json.
    Returns {"exit_code", "folder", "files", "missing", "failed", "trained", "claims"}: exit code 0 when every
    run of the experiment (or slice) has a result, 1 otherwise (failed, interrupted, another shard's or
    report-only).
    """
    t_start = time.perf_counter()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    out = Path(out)
    runs, budget, devices = plan(experiment, budget_name, device, steps, report_only)
    sliced = parse_only(only, runs)
    runs = select_runs(runs, sliced)
    if not runs:
        raise ValueError(f"--only {only}: no run of {experiment} matches every part of the slice")
    shard_ij = parse_shard(shard)
    if workers is None:
        workers = default_workers(devices, per_gpu)
    results = {r.key: res for r in runs if (res := load_result(out, r.key)) is not None}
    unique = list(dict((r.key, r) for r in runs).values())
    if shard_ij is not None:  # shards cut the whole plan (not what is left), so they are the same every time
        i, n = shard_ij
        unique = unique[i::n]
    pending = sorted((r for r in unique if r.key not in results), key=_cost, reverse=True)
    log(f"{experiment} at budget {budget_name}: {len(runs)} runs, {len(results)} cached, "
        f"{0 if report_only else len(pending)} to train on {', '.join(devices)} with {workers} worker(s)")  # fmt: skip
    if report_only and not results and devices == ["cpu"]:
        log(
            "no cached run under these keys (fp32, as on the CPU); runs made on GPUs have bf16 keys: "
            "add --device cuda"
        )
    stats = SweepStats()
    if ensemble is None:
        ensemble = devices[0].startswith("cuda")
    use_mps = mps and devices[0].startswith("cuda") and workers > 1  # MPS shares a GPU between processes
    if pending and not report_only:
        if deterministic:
            set_process_env()  # before any CUDA work here, and inherited by the spawned workers
        jobs = [_job(r, out, experiment, keep_checkpoints, compile_model, deterministic) for r in pending]
        n_jobs = len(jobs)
        if ensemble:
            jobs = group_jobs(jobs, ensemble_size)
            groups = sum("members" in j for j in jobs)
            log(f"as {groups} ensemble(s) of {n_jobs - (len(jobs) - groups)} runs and {len(jobs) - groups} single runs")
        with mps_daemon(use_mps, log=log):
            stats = run_jobs(jobs, devices=devices, workers=workers, total=len(results) + n_jobs,
                             progress=progress, describe=_describe)  # fmt: skip
        results = {r.key: res for r in runs if (res := load_result(out, r.key)) is not None}
    wall = time.perf_counter() - t_start
    thr = provenance.throughput(len(stats.trained), stats.wall_seconds, devices)
    missing = [r.key for r in runs if r.key not in results]
    prov = provenance.record(
        argv, devices, started_at=started_at, experiment=experiment, budget=budget_name, budget_settings=asdict(budget),
        wall_seconds=round(wall, 2), throughput=thr, all_runs=provenance.all_runs(list(results.values()), devices),
        runs_total=len({r.key for r in runs}),
        runs_cached=len({r.key for r in runs}) - len(missing) - len(stats.trained), runs_failed=len(stats.failed),
        runs_missing=len(set(missing)), workers=workers, mps=use_mps, compile=compile_model, ensemble=ensemble,
        deterministic=deterministic, shard=shard,
        report_only=report_only, only=only_text(sliced) or None,
        failed=stats.failed,
    )  # fmt: skip
    folder = out / (f"{experiment}-only-{only_slug(sliced)}" if sliced else experiment)
    files, claims = _write_outputs(experiment, runs, results, budget_name, budget.note, prov, folder,
                                   only_text(sliced))  # fmt: skip
    rate = provenance.rate_text(thr)
    log(f"{experiment}: {len(stats.trained)} runs trained in {stats.wall_seconds:.1f} s"
        + (f" ({rate})" if rate else "") + f"; {len(set(missing))} missing, {len(stats.failed)} failed")  # fmt: skip
    for c in claims:
        log(f"  [{c['verdict']}] {c['claim']}: ours {c['ours'] if c['ours'] is None else round(c['ours'], 3)}")
    log(f"wrote {', '.join(str(f) for f in files)}")
    return {"exit_code": 0 if not missing else 1, "folder": folder, "files": files, "missing": missing,
            "failed": stats.failed, "trained": stats.trained, "claims": claims}  # fmt: skip


def _job(r: RunSpec, out: Path, experiment: str, keep_checkpoint: bool, compile_model: bool = False,
         deterministic: bool = True) -> dict:  # fmt: skip
    return {"key": r.key, "config": r.config.to_dict(), "precision": r.precision, "labels": r.labels,
            "experiment": experiment, "out": str(out), "device": None, "keep_checkpoint": keep_checkpoint,
            "compile": compile_model, "deterministic": deterministic}  # fmt: skip


def constant_baselines(runs: list[RunSpec]) -> dict[str, dict]:
    """task -> the constant-answer baseline (:meth:`Task.constant_baseline`) on the test set its runs are
    evaluated on (the budget's size and task arguments)."""
    out = {}
    for r in runs:
        if r.task not in out:
            t = r.config.train
            out[r.task] = get_task(r.task, **t.task_args).constant_baseline(t.eval_size)
    return out


def _write_outputs(experiment, runs, results, budget_name, note, prov, folder: Path, slice_text: str = ""):
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    w = lambda name, obj: files.append(atomic_write_json(folder / name, obj))  # noqa: E731
    w("provenance.json", prov)
    # the paper's numbers once per --out folder, beside the experiments' folders (the same for all of them)
    files.append(atomic_write_json(folder.parent / "paper_numbers.json", paper_dict()))
    w("runs.json", [results[r.key] if r.key in results else {"key": r.key, "labels": r.labels, "status": "missing"}
                    for r in runs])  # fmt: skip
    files.append(atomic_write_text(folder / "command.txt", prov["command"] + "\n"))
    claims_src = CLAIMS
    extra: dict = {}
    title = {"table3": "Table 3 and Figure 6", "table5": "Table 5", "figure1": "Figure 1",
             "figure4": "Figures 4 and 7", "figure8": "Figure 8"}[experiment]  # fmt: skip
    head = report.header(f"Reproduction of the paper's {title}", prov, budget_name, note)
    sub = f"{budget_name} budget; {prov['device'].get('gpus', ['CPU'])[0]}"
    if experiment in ("table3", "table5"):
        cells = aggregate.chomsky_cells(runs, results)
        tasks = [t for t in TABLE3_COLUMNS if any(r.task == t for r in runs)]
        models = [m for m in TABLE3_MODELS if any(r.model_label == m for r in runs)]
        baselines = constant_baselines(runs)
        claims = aggregate.check_claims(experiment, cells, claims_src,
                                        {t: b["scaled_accuracy"] for t, b in baselines.items()},
                                        tasks=tasks if slice_text else None,
                                        models=models if slice_text else None)  # fmt: skip
        md = (report.table3_md if experiment == "table3" else report.table5_md)(cells, models, claims, head, tasks,
                                                                                 baselines, slice_text)  # fmt: skip
        if experiment == "table3":  # table5 has the same runs: its report points to table3's figure, no copy
            chance = {t: get_task(t).chance for t in tasks}
            files.append(
                plots.figure6(
                    cells,
                    results,
                    {t: TABLE3_COLUMNS[t] for t in tasks},
                    models,
                    chance,
                    folder / "figure6.png",
                    f"Figure 6: scaled accuracy vs length (best seed at the chosen lr; {sub})",
                )
            )
        summary = {f"{m} | {t}": c for (m, t), c in cells.items()}
        extra = {"constant_answer_baselines": baselines}
    elif experiment == "figure1":
        cells = aggregate.figure1_cells(runs, results)
        claims = aggregate.check_claims(experiment, cells, claims_src)
        md = report.figure1_md(cells, claims, head)
        files.append(plots.figure1(cells, folder / "figure1.png", f"Figure 1: diagonal LRNN on parity ({sub})"))
        summary = cells
    else:
        tasks = FIGURE4_TASKS if experiment == "figure4" else FIGURE8_TASKS
        models = [ms.label for ms in experiment_plan(experiment)[0][1]]
        cells = aggregate.group_cells(runs, results)
        claims = aggregate.check_claims(experiment, cells, claims_src)
        test_len = {t: get_task(t).test_lengths[1] for t in tasks}
        md = report.prefix_md(experiment, cells, tasks, models, claims, head, test_len)
        train_len = {t: get_task(t).train_lengths[1] for t in tasks}
        name = "S5" if experiment == "figure4" else "Z60"
        files.append(
            plots.prefix_figure(
                cells,
                train_len,
                models,
                folder / f"{experiment}.png",
                f"{name}: prefix sequence accuracy, best seed ({sub})",
                all_seeds=False,
            )
        )
        if experiment == "figure4":
            files.append(
                plots.prefix_figure(
                    cells,
                    train_len,
                    models,
                    folder / "figure7.png",
                    f"{name}: prefix sequence accuracy, all seeds ({sub})",
                )
            )
        summary = {f"{m} | {t}": {**c, "seeds": [{k: v for k, v in s.items() if k != "curve"} for s in c["seeds"]],
                                  "best": {k: v for k, v in c["best"].items() if k != "curve"} if c["best"] else None}
                   for (m, t), c in cells.items()}  # fmt: skip
    files.append(atomic_write_text(folder / f"{experiment}.md", md))
    w(
        "summary.json",
        {
            "experiment": experiment,
            "budget": budget_name,
            "slice": slice_text or None,
            "cells": summary,
            "claims": claims,
            **extra,
        },
    )
    return files, claims
