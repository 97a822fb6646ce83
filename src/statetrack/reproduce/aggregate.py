"""From per-run results to table cells: lr chosen by the median over seeds, best of n, median +- MAD, L_0.9.

Conventions (paper.md 5.1.2 and 5.2):
- Chomsky tasks: the metric is the final scaled accuracy on the test set. For each (model, task) the lr with
  the highest median over seeds is chosen (ties: the first lr of the grid); Table 3 reports the best seed at
  that lr, Table 5 the median +- MAD. A diverged run (non-finite loss) counts as chance level, 0.0.
- Group tasks: the prefix sequence accuracy curve (fraction of sequences whose labels at positions 1..L are
  all right) against L; L_0.9 = the longest L up to which it stays >= 0.9. The best seed maximises
  (L_0.9, accuracy at the test length).
"""

from __future__ import annotations

import statistics

import torch

from statetrack.tasks import metrics
from statetrack.tasks.metrics import median_mad

from .experiments import RunSpec


def run_value(res: dict) -> float:
    """Final scaled accuracy of a run (0.0 = chance for a diverged run)."""
    if res["status"] != "ok" or res.get("final") is None:
        return 0.0
    return float(res["final"]["scaled_accuracy"])


def _groups(runs: list[RunSpec]) -> dict[tuple[str, str], list[RunSpec]]:
    g: dict[tuple[str, str], list[RunSpec]] = {}
    for r in runs:
        g.setdefault((r.model_label, r.task), []).append(r)
    return g


def chomsky_cells(runs: list[RunSpec], results: dict[str, dict]) -> dict[tuple[str, str], dict]:
    """(model, task) -> cell: chosen lr, best, median, mad, values at that lr, per-lr medians, best run key,
    counts of runs expected / present / diverged. Cells with no finished run have ``best`` None."""
    cells = {}
    for (model, task), rs in _groups(runs).items():
        by_lr: dict[float, list[tuple[RunSpec, dict]]] = {}
        for r in rs:
            if r.key in results:
                by_lr.setdefault(r.lr, []).append((r, results[r.key]))
        lrs = list(dict.fromkeys(r.lr for r in rs))
        medians = {lr: statistics.median(run_value(x) for _, x in by_lr[lr]) for lr in lrs if lr in by_lr}
        cell = {"expected": len(rs), "present": sum(len(v) for v in by_lr.values()),
                "diverged": sum(x["status"] == "diverged" for v in by_lr.values() for _, x in v),
                "lr_medians": {str(lr): m for lr, m in medians.items()}, "lr": None, "best": None, "median": None,
                "mad": None, "values": [], "seeds": [], "best_key": None}  # fmt: skip
        if medians:
            lr = max(medians, key=lambda k: (medians[k], -lrs.index(k)))
            pairs = sorted(by_lr[lr], key=lambda p: p[0].seed)
            vals = [run_value(x) for _, x in pairs]
            med, mad = median_mad(vals)
            best_i = max(range(len(vals)), key=lambda i: vals[i])
            cell.update(lr=lr, best=max(vals), median=med, mad=mad, values=vals, seeds=[p.seed for p, _ in pairs],
                        best_key=pairs[best_i][0].key)  # fmt: skip
        cells[(model, task)] = cell
    return cells


def prefix_curve(res: dict) -> dict[int, float]:
    """Prefix sequence accuracy against length L = 1, 2, ... (labels read), from a run's final evaluation.

    The evaluation keys positions by index; the first labelled position is length 1, whatever the offset.
    """
    if res["status"] != "ok" or not res.get("final") or not res["final"].get("prefix_accuracy"):
        return {}
    raw = {int(k): float(v) for k, v in res["final"]["prefix_accuracy"].items()}
    first = min(raw)
    return {k - first + 1: v for k, v in sorted(raw.items())}


def l_tau(curve: dict[int, float], tau: float = 0.9) -> int:
    """Longest L such that the curve is >= tau at every length up to L (0 if it starts below):
    :func:`statetrack.tasks.metrics.l_tau` on a {length: accuracy} curve."""
    xs = sorted(curve)
    acc = torch.tensor([curve[x] for x in xs], dtype=torch.float64)
    return metrics.l_tau(metrics.Curve(torch.tensor(xs), acc, torch.ones(len(xs), dtype=torch.long), acc, acc), tau)


def group_cells(runs: list[RunSpec], results: dict[str, dict], tau: float = 0.9) -> dict[tuple[str, str], dict]:
    """(model, task) -> cell: per seed L_tau and final prefix accuracy, the best seed, its curve."""
    cells = {}
    for (model, task), rs in _groups(runs).items():
        seeds = []
        for r in sorted(rs, key=lambda r: (r.lr, r.seed)):
            res = results.get(r.key)
            if res is None:
                continue
            c = prefix_curve(res)
            final = c[max(c)] if c else 0.0
            seeds.append({"seed": r.seed, "lr": r.lr, "key": r.key, "status": res["status"], "l_tau": l_tau(c, tau),
                          "final": final, "curve": c})  # fmt: skip
        cell = {"expected": len(rs), "present": len(seeds), "seeds": seeds, "best": None, "tau": tau}
        if seeds:
            cell["best"] = max(seeds, key=lambda s: (s["l_tau"], s["final"]))
        cells[(model, task)] = cell
    return cells


def figure1_cells(runs: list[RunSpec], results: dict[str, dict]) -> dict[str, dict]:
    """model label -> {seeds: [{seed, history [(step, scaled acc)], final}], min, max, median}."""
    out = {}
    for (model, _task), rs in _groups(runs).items():
        seeds = []
        for r in sorted(rs, key=lambda r: r.seed):
            res = results.get(r.key)
            if res is None:
                continue
            hist = [(h["step"], h["scaled_accuracy"]) for h in res.get("history", [])]
            seeds.append({"seed": r.seed, "key": r.key, "history": hist, "final": run_value(res),
                          "status": res["status"]})  # fmt: skip
        vals = [s["final"] for s in seeds]
        out[model] = {"expected": len(rs), "present": len(seeds), "seeds": seeds,
                      "min": min(vals) if vals else None, "max": max(vals) if vals else None,
                      "median": statistics.median(vals) if vals else None}  # fmt: skip
    return out


def claim_stat(experiment: str, summary: dict, task: str, model: str):
    """The number a claim is judged on (None when its runs are missing): what the experiment's table reports,
    Table 3 the best seed, Table 5 the median over seeds."""
    if experiment in ("table3", "table5"):
        return summary.get((model, task), {}).get("best" if experiment == "table3" else "median")
    if experiment == "figure1":
        name, _, which = model.partition(" (")
        cell = summary.get(name, {})
        return cell.get(which.rstrip(")")) if which else cell.get("median")
    cell = summary.get((model, task), {})
    return cell["best"]["l_tau"] if cell.get("best") else None


def check_claims(experiment: str, summary: dict, claims, baselines: dict[str, float] | None = None,
                 tasks=None, models=None) -> list[dict]:  # fmt: skip
    """Judge the paper's claims (paper_numbers.CLAIMS) of ``experiment`` on our summary: pass / MISS / n/a.

    baselines: task -> constant-answer scaled accuracy; a comparison of two models that are both at or below
    it carries no information, and says so ("informative": False). tasks, models: only the claims on these
    tasks and models (a slice of Table 3/5; None = all).
    """
    out = []
    for exp, text, (op, task, model, ref) in claims:
        if exp != experiment or (tasks is not None and task not in tasks):
            continue
        if models is not None and (model not in models or (op == "gt" and ref not in models)):
            continue
        ours = claim_stat(exp, summary, task, model)
        other = claim_stat(exp, summary, task, ref) if op == "gt" else ref
        base = (baselines or {}).get(task)
        informative = not (op == "gt" and base is not None and ours is not None and other is not None
                           and max(ours, other) <= base)  # fmt: skip
        if ours is None or other is None:
            verdict = "n/a (runs missing)"
        else:
            ok = ours >= other if op == "ge" else ours <= other if op == "le" else ours > other
            verdict = "pass" if ok else "MISS"
            if not informative:
                verdict += f" (no information: both at or below the constant answer, {base:.3f})"
        out.append({"claim": text, "ours": ours, "reference": other, "verdict": verdict, "informative": informative,
                    "gap": None if ours is None or other is None else ours - other})  # fmt: skip
    return out
