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
        f"git {(v['git']['commit'] or '?')[:10]}{' (dirty)' if v['git']['dirty'] else ''}",
        f"- runs: {prov['runs_total']} in the experiment, {prov['runs_cached']} cached, {thr.get('runs_trained', 0)} "
        f"trained now in {thr.get('wall_seconds', 0):.0f} s wall ({rate}), {prov['runs_failed']} failed, "
        f"{prov['runs_missing']} missing",
        *_span_line(prov.get("all_runs")),
        "- every number below comes from these runs; the paper's numbers are in `../paper_numbers.json`",
    ]  # fmt: skip
    return "\n".join(lines) + "\n\n"


def _misses(rows: list[tuple[str, str, float | None, float]]) -> list[str]:
    """(model, column, ours, paper) -> lines for the cells where ours is below the paper by > MISS_TOL."""
    out = []
    for model, col, ours, paper in rows:
        if ours is None:
            out.append(f"- {model} / {col}: no result yet (paper {paper:.3f})")
        elif ours < paper - MISS_TOL:
            out.append(f"- {model} / {col}: ours {ours:.3f} vs paper {paper:.3f}: **misses by {paper - ours:.3f}**")
    return out


def _claims_md(claims: list[dict]) -> str:
    if not claims:
        return ""
    rows = [(c["claim"], _f(c["ours"]) if isinstance(c["ours"], float) else c["ours"] if c["ours"] is not None else "—",
             _f(c["reference"]) if isinstance(c["reference"], float) else c["reference"], c["verdict"])
            for c in claims]  # fmt: skip
    return "\n## Targets and claims\n\n" + _md_table(["claim", "ours", "reference", "verdict"], rows) + "\n"


def _vs_paper(cells, models, ours_of, paper_of, text_of) -> tuple[list[list[str]], list[str]]:
    """A model x Table 3 column table of (ours, paper) cells: (rows, the miss lines of :func:`_misses`).

    ours_of(cell) -> our value or None; paper_of(model, task) -> the paper's value; text_of(ours, cell, model,
    task) -> the cell's text (cell None where no run has a result; a note on missing or diverged runs is added)."""
    rows, miss_rows = [], []
    for m in models:
        r = [m]
        for t in TABLE3_COLUMNS:
            c = cells.get((m, t))
            ours = ours_of(c) if c else None
            r.append(text_of(ours, c, m, t) + (_runs_note(c) if c else ""))
            miss_rows.append((m, TABLE3_COLUMNS[t], ours, paper_of(m, t)))
        rows.append(r)
    return rows, _misses(miss_rows)


def _misses_md(title: str, misses: list[str], claims: list[dict]) -> str:
    return (
        f"### {title} (by more than {MISS_TOL})\n\n"
        + ("\n".join(misses) if misses else "none")
        + "\n"
        + _claims_md(claims)
    )


def table3_md(cells, models, claims, head: str) -> str:
    def text(ours, cell, m, t):
        paper, mark = TABLE3[m][t], "†" if t in TABLE3_UNVERIFIED_COLUMNS else ""
        gap = "" if ours is None else f", {ours - paper:+.3f}"
        return f"{_f(ours)} (paper {paper:.3f}{mark}{gap})"

    rows, misses = _vs_paper(cells, models, lambda c: c["best"], lambda m, t: TABLE3[m][t], text)
    lr_rows = [[m, *(f"{c['lr']:g}" if (c := cells.get((m, t))) and c["lr"] is not None else "—"
                     for t in TABLE3_COLUMNS)] for m in models]  # fmt: skip
    return (head + "## Table 3: best of the seeds at the lr chosen by the median over seeds (scaled accuracy)\n\n"
            + _md_table(["model", *TABLE3_COLUMNS.values()], rows)
            + "\n\nCells: ours (paper, ours − paper). † not in the camera-ready Table 3: an earlier arXiv version's "
            "'w/ brackets' column, most likely the `*` variant (unverified, paper.md 5.1.4). Test: the task's fixed "
            "test set, lengths 40-256, trained on 3-40.\n\n### Chosen learning rates\n\n"
            + _md_table(["model", *TABLE3_COLUMNS.values()], lr_rows)
            + "\n\n" + _misses_md("Where ours misses the paper", misses, claims))  # fmt: skip


def table5_md(cells, models, claims, head: str) -> str:
    def text(ours, cell, m, t):
        pm, pd = TABLE5[m][t]
        mad = "" if ours is None else f" ± {cell['mad']:.3f}"
        return f"{_f(ours)}{mad} (paper {pm:.3f} ± {pd:.3f})"

    rows, misses = _vs_paper(cells, models, lambda c: c["median"], lambda m, t: TABLE5[m][t][0], text)
    return (head + "## Table 5: median ± MAD over seeds at the chosen lr (scaled accuracy)\n\n"
            + _md_table(["model", *TABLE3_COLUMNS.values()], rows)
            + "\n\nCells: ours (paper). The lr of each cell is the one of Table 3 (highest median). Figure 6 of these "
            "runs: `../table3/figure6.png` (written by `statetrack reproduce table3`).\n\n"
            + _misses_md("Where our median misses the paper's", misses, claims))  # fmt: skip


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
