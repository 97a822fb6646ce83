"""Markdown for the reproduced tables and figures: our value and the paper's in every cell, misses spelled out."""

from __future__ import annotations

from .paper_numbers import FIGURE_PROSE, TABLE3, TABLE3_COLUMNS, TABLE3_UNVERIFIED_COLUMNS, TABLE5
from .provenance import rate_text

MISS_TOL = 0.02  # below the paper by more than this (absolute scaled accuracy) = a miss


def _f(v, nd=3):
    return "—" if v is None else f"{v:.{nd}f}"


def _md_table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _runs_note(cell) -> str:
    bits = []
    if cell["present"] < cell["expected"]:
        bits.append(f"{cell['present']}/{cell['expected']} runs")
    if cell.get("diverged"):
        bits.append(f"{cell['diverged']} diverged")
    return f" [{', '.join(bits)}]" if bits else ""


def _span_line(span: dict | None) -> list[str]:
    """The experiment's time on the devices over every invocation that made its runs (a list: empty if none)."""
    if not span or not span.get("runs") or not span.get("span_seconds"):
        return []
    rate = rate_text(span) or "—"
    made_on = f"; trained on {', '.join(span['made_on'])}" if span.get("made_on") else ""
    return [
        f"- all {span['runs']} finished runs: {span['span_seconds'] / 60:.1f} min with at least one of them "
        f"training, over every invocation ({rate} on {span['device_count']} {span['unit']}{made_on})"
    ]


def _sources_line(span: dict | None) -> list[str]:
    """Which source trees trained the runs; a warning when they are several (runs from mixed commits)."""
    made_from = (span or {}).get("made_from") or {}
    if not made_from:
        return []
    text = ", ".join(f"{h} ({n} runs)" for h, n in made_from.items())
    if len(made_from) == 1:
        return [f"- runs trained by source tree {text}"]
    return [
        f'- **runs trained by {len(made_from)} different source trees**: {text} ("unrecorded": results '
        "written before the hash was recorded); compare cells with care"
    ]


def header(title: str, prov: dict, budget_name: str, budget_note: str) -> str:
    v, d = prov["versions"], prov["device"]
    gpus = ", ".join(d.get("gpus", [])) or f"CPU ({d['cpu']}, {d['cpu_count']} cores)"
    thr = prov.get("throughput", {})
    rate = rate_text(thr) or "—"
    lines = [
        f"# {title}",
        "",
        f"- budget: **{budget_name}**" + (f" — {budget_note}" if budget_note else ""),
        f"- command: `{prov['command']}`",
        f"- device: {gpus}; host {d['host']}" + (" (wrote this report only)" if prov.get("report_only") else ""),
        f"- versions: torch {v['torch']} (CUDA {v['cuda']}), python {v['python']}, statetrack {v['statetrack']}, "
        f"git {(v['git']['commit'] or '?')[:10]}{' (dirty)' if v['git']['dirty'] else ''}, source tree "
        f"{v.get('source', {}).get('sha256', '?')} (sha256 of the package's files)",
        *_sources_line(prov.get("all_runs")),
        f"- runs: {prov['runs_total']} in the experiment, {prov['runs_cached']} cached, {thr.get('runs_trained', 0)} "
        f"trained now in {thr.get('wall_seconds', 0):.0f} s wall ({rate}), {prov['runs_failed']} failed, "
        f"{prov['runs_missing']} missing",
        *_span_line(prov.get("all_runs")),
        "- every number below comes from these runs; the paper's numbers are in `../paper_numbers.json`",
    ]  # fmt: skip
    return "\n".join(lines) + "\n\n"


def _differences(rows: list[tuple[str, str, float | None, float, float | None]]) -> list[str]:
    """(model, column, ours, paper, constant-answer baseline) -> lines for the cells that differ from the paper
    by more than MISS_TOL (below: a miss; above: flagged too), and those where the comparison says nothing
    (ours and the paper's both at or below what always giving the best single answer scores)."""
    below, above, empty, none = [], [], [], []
    for model, col, ours, paper, base in rows:
        if ours is None:
            none.append(f"- {model} / {col}: no result yet (paper {paper:.3f})")
        elif base is not None and max(ours, paper) <= base:
            empty.append(f"- {model} / {col}: ours {ours:.3f}, paper {paper:.3f}: both at or below the constant "
                         f"answer ({base:.3f}): **no information**")  # fmt: skip
        elif ours < paper - MISS_TOL:
            below.append(f"- {model} / {col}: ours {ours:.3f} vs paper {paper:.3f}: **misses by {paper - ours:.3f}**")
        elif ours > paper + MISS_TOL:
            above.append(f"- {model} / {col}: ours {ours:.3f} vs paper {paper:.3f}: **above by {ours - paper:.3f}**")
    return below + above + empty + none


def _claims_md(claims: list[dict]) -> str:
    if not claims:
        return ""
    rows = [(c["claim"], _f(c["ours"]) if isinstance(c["ours"], float) else c["ours"] if c["ours"] is not None else "—",
             _f(c["reference"]) if isinstance(c["reference"], float) else c["reference"], c["verdict"])
            for c in claims]  # fmt: skip
    return "\n## Targets and claims\n\n" + _md_table(["claim", "ours", "reference", "verdict"], rows) + "\n"


NO_INFO = "∅"  # marks a cell whose comparison with the paper carries no information


def _vs_paper(cells, models, tasks, ours_of, paper_of, text_of, baselines) -> tuple[list[list[str]], list[str]]:
    """A model x task table of (ours, paper) cells, then a row with each task's constant-answer baseline:
    (rows, the lines of :func:`_differences`).

    ours_of(cell) -> our value or None; paper_of(model, task) -> the paper's value; text_of(ours, cell, model,
    task) -> the cell's text (cell None where no run has a result; a note on missing or diverged runs is added,
    and NO_INFO where ours and the paper's are both at or below the baseline)."""
    rows, diff_rows = [], []
    for m in models:
        r = [m]
        for t in tasks:
            c = cells.get((m, t))
            ours = ours_of(c) if c else None
            paper, base = paper_of(m, t), (baselines.get(t) or {}).get("scaled_accuracy")
            empty = ours is not None and base is not None and max(ours, paper) <= base
            r.append(text_of(ours, c, m, t) + (_runs_note(c) if c else "") + (f" {NO_INFO}" if empty else ""))
            diff_rows.append((m, TABLE3_COLUMNS[t], ours, paper, base))
        rows.append(r)
    rows.append(["*constant answer*", *(_baseline_text(baselines.get(t)) for t in tasks)])
    return rows, _differences(diff_rows)


def _baseline_text(b: dict | None) -> str:
    return "—" if not b else f"*{b['scaled_accuracy']:.3f} (always '{b['answer_text']}')*"


_BASELINE_NOTE = (
    "The last row: the scaled accuracy of always giving the most frequent answer of the test set (the best "
    f"constant); {NO_INFO} marks a cell where ours and the paper's are both at or below it, so that comparing "
    "them says nothing."
)


def _differences_md(title: str, diffs: list[str], claims: list[dict]) -> str:
    return (
        f"### {title} (by more than {MISS_TOL})\n\n"
        + ("\n".join(diffs) if diffs else "none")
        + "\n"
        + _claims_md(claims)
    )


def _slice_line(slice_text: str) -> str:
    if not slice_text:
        return ""
    return f"Slice: `--only {slice_text}` (the other cells of the table are not part of this report).\n\n"


def table3_md(cells, models, claims, head: str, tasks=None, baselines=None, slice_text: str = "") -> str:
    tasks = list(tasks or TABLE3_COLUMNS)
    baselines = baselines or {}

    def text(ours, cell, m, t):
        paper, mark = TABLE3[m][t], "†" if t in TABLE3_UNVERIFIED_COLUMNS else ""
        gap = "" if ours is None else f", {ours - paper:+.3f}"
        return f"{_f(ours)} (paper {paper:.3f}{mark}{gap})"

    rows, diffs = _vs_paper(cells, models, tasks, lambda c: c["best"], lambda m, t: TABLE3[m][t], text, baselines)
    heads = ["model", *(TABLE3_COLUMNS[t] for t in tasks)]
    lr_rows = [[m, *(f"{c['lr']:g}" if (c := cells.get((m, t))) and c["lr"] is not None else "—"
                     for t in tasks)] for m in models]  # fmt: skip
    return (head + "## Table 3: best of the seeds at the lr chosen by the median over seeds (scaled accuracy)\n\n"
            + _slice_line(slice_text)
            + _md_table(heads, rows)
            + "\n\nCells: ours (paper, ours − paper). † not in the camera-ready Table 3: an earlier arXiv version's "
            "'w/ brackets' column, most likely the `*` variant (unverified, paper.md 5.1.4). Test: the task's fixed "
            "test set, lengths 40-256 (mod. arith. 39-255, as the original generator), trained on 3-40. "
            + _BASELINE_NOTE + "\n\n### Chosen learning rates\n\n"
            + _md_table(heads, lr_rows)
            + "\n\n" + _differences_md("Where ours differs from the paper", diffs, claims))  # fmt: skip


def table5_md(cells, models, claims, head: str, tasks=None, baselines=None, slice_text: str = "") -> str:
    tasks = list(tasks or TABLE3_COLUMNS)
    baselines = baselines or {}

    def text(ours, cell, m, t):
        pm, pd = TABLE5[m][t]
        mad = "" if ours is None else f" ± {cell['mad']:.3f}"
        return f"{_f(ours)}{mad} (paper {pm:.3f} ± {pd:.3f})"

    rows, diffs = _vs_paper(cells, models, tasks, lambda c: c["median"], lambda m, t: TABLE5[m][t][0], text,
                            baselines)  # fmt: skip
    return (head + "## Table 5: median ± MAD over seeds at the chosen lr (scaled accuracy)\n\n"
            + _slice_line(slice_text)
            + _md_table(["model", *(TABLE3_COLUMNS[t] for t in tasks)], rows)
            + "\n\nCells: ours (paper). The lr of each cell is the one of Table 3 (highest median). Claims are "
            "judged on the medians, as this table reports them. " + _BASELINE_NOTE + " Figure 6 of these runs: "
            "`../table3/figure6.png` (written by `statetrack reproduce table3`).\n\n"
            + _differences_md("Where our median differs from the paper's", diffs, claims))  # fmt: skip


def figure1_md(cells, claims, head: str) -> str:
    rows = []
    for m, c in cells.items():
        finals = ", ".join(f"{s['final']:.3f}" for s in c["seeds"]) or "—"
        rows.append([m, finals, _f(c["min"]), _f(c["median"]), _f(c["max"]), f"{c['present']}/{c['expected']}"])
    return (head + "## Figure 1: diagonal LRNN on parity, final scaled accuracy on lengths 40-256\n\n"
            + _md_table(["eigenvalues", "per seed", "min", "median", "max", "runs"], rows)
            + f"\n\nPaper (no values published): {FIGURE_PROSE['figure1']}\n\nCurves: `figure1.png`.\n"
            + _claims_md(claims))  # fmt: skip


def prefix_md(experiment, cells, tasks, models, claims, head: str, test_len: dict[str, int]) -> str:
    rows = []
    for m in models:
        r = [m]
        for t in tasks:
            c = cells.get((m, t))
            if not c or not c["best"]:
                r.append("—")
                continue
            seeds = "/".join(str(s["l_tau"]) for s in c["seeds"])
            r.append(f"{c['best']['l_tau']} ({seeds}); {c['best']['final']:.2f}")
        rows.append(r)
    title = "Figure 4/7: S5 word problems" if experiment == "figure4" else "Figure 8: Z60 word problems"
    return (head + f"## {title}: length generalization\n\n"
            + _md_table(["model", *tasks], rows)
            + "\n\nCells: L_0.9 of the best seed (each seed's L_0.9); prefix sequence accuracy of the best seed at "
            f"the test length ({', '.join(f'{t}: {test_len[t]}' for t in tasks)}). L_0.9 = the longest length up "
            "to which the fraction of sequences with all labels right stays >= 0.9.\n\n"
            f"Paper (no values published): {FIGURE_PROSE[experiment]}\n\nCurves: `{experiment}.png` (best seed) "
            + ("and `figure7.png` (all seeds).\n" if experiment == "figure4" else "(other seeds thin).\n")
            + _claims_md(claims))  # fmt: skip
