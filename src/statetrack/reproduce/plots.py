"""The reproduction's figures (PNG, matplotlib Agg): Figure 6 (per-length curves of Table 3's runs), Figure 1
(scaled accuracy against training steps) and Figures 4/7/8 (prefix sequence accuracy against length)."""

from __future__ import annotations

from pathlib import Path

import torch

from statetrack.plotting import pyplot, save_figure
from statetrack.tasks.metrics import scaled_accuracy, wilson_interval


def _colors(labels):
    cmap = pyplot().get_cmap("tab10")
    return {lab: cmap(i % 10) for i, lab in enumerate(labels)}


def _task_panels(n: int):
    """A figure of ``n`` panels side by side, one per task: (figure, list of the n axes)."""
    fig, axes = pyplot().subplots(1, n, figsize=(4.2 * n, 3.8), squeeze=False)
    return fig, list(axes[0])


def _finish_panels(fig, axes, ylabel: str, legend_loc: str, title: str, path: Path) -> Path:
    """The y label on the first panel, the legend on the last, the title; then the file."""
    axes[0].set_ylabel(ylabel)
    axes[-1].legend(fontsize=7, loc=legend_loc)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def figure6(cells: dict, results: dict, tasks: dict[str, str], models: list[str], chance: dict[str, float],
            path: Path, title: str, bin_width: int = 16) -> Path:  # fmt: skip
    """Scaled accuracy against test length, one panel per task, one line per model (its best seed at the chosen
    lr), lengths pooled in bins of ``bin_width`` with a 95% Wilson band.

    cells: aggregate.chomsky_cells output; results: key -> result; tasks: task -> column title.
    """
    fig, axes = _task_panels(len(tasks))
    colors = _colors(models)
    for ax, (task, head) in zip(axes, tasks.items(), strict=True):
        for model in models:
            cell = cells.get((model, task))
            if not cell or not cell["best_key"] or results[cell["best_key"]].get("final") is None:
                continue
            fin = results[cell["best_key"]]["final"]
            per = {int(k): v for k, v in fin["per_length"].items()}
            cnt = {int(k): v for k, v in fin["count_per_length"].items()}
            bins: dict[int, list[float]] = {}
            for L in sorted(per):
                b = bins.setdefault(L // bin_width * bin_width, [0.0, 0.0])
                b[0] += per[L] * cnt[L]
                b[1] += cnt[L]
            xs = sorted(bins)
            k = torch.tensor([round(bins[x][0]) for x in xs])
            n = torch.tensor([bins[x][1] for x in xs])
            lo, hi = wilson_interval(k, n)
            acc = k.double() / n.double()
            c = chance[task]
            mid = [x + bin_width / 2 for x in xs]
            ax.plot(mid, scaled_accuracy(acc, c).tolist(), label=model, color=colors[model], lw=1.5)
            ax.fill_between(mid, scaled_accuracy(lo, c).tolist(), scaled_accuracy(hi, c).tolist(),
                            color=colors[model], alpha=0.15, lw=0)  # fmt: skip
        ax.set(title=head, xlabel="test sequence length", ylim=(-0.3, 1.05))
        ax.axhline(0.0, color="gray", lw=0.7)
        ax.grid(alpha=0.3)
    return _finish_panels(fig, axes, "scaled accuracy (best seed)", "upper right", title, path)


def figure1(cells: dict, path: Path, title: str) -> Path:
    """Scaled accuracy on the test lengths against training steps; one line per seed, colour per range."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    colors = _colors(list(cells))
    for model, cell in cells.items():
        for i, s in enumerate(cell["seeds"]):
            if s["history"]:
                steps, vals = zip(*s["history"], strict=True)
                ax.plot(steps, vals, color=colors[model], alpha=0.85, lw=1.3,
                        label=f"{model}" if i == 0 else None)  # fmt: skip
    ax.set(xlabel="training step", ylabel="scaled accuracy (lengths 40-256)", ylim=(-0.3, 1.05))
    fig.suptitle(title, fontsize=10, wrap=True)  # long device names must not run off the figure
    ax.axhline(0.0, color="gray", lw=0.7)
    ax.grid(alpha=0.3)
    ax.legend(title="eigenvalues (one line per seed)")
    return save_figure(fig, path)


def prefix_figure(cells: dict, tasks: dict[str, int], models: list[str], path: Path, title: str,
                  all_seeds: bool = True) -> Path:  # fmt: skip
    """Prefix sequence accuracy against length (log axis), one panel per task: the best seed bold and, with
    ``all_seeds``, every other seed thin (the paper's Figures 4 and 7 in one). tasks: task -> training length
    (a dashed line)."""
    fig, axes = _task_panels(len(tasks))
    colors = _colors(models)
    for ax, (task, train_len) in zip(axes, tasks.items(), strict=True):
        for model in models:
            cell = cells.get((model, task))
            if not cell or not cell["best"]:
                continue
            best = cell["best"]
            if all_seeds:
                for s in cell["seeds"]:
                    if s is not best and s["curve"]:
                        ax.plot(list(s["curve"]), list(s["curve"].values()), color=colors[model], lw=0.7, alpha=0.5)
            if best["curve"]:
                ax.plot(list(best["curve"]), list(best["curve"].values()), color=colors[model], lw=1.8, label=model)
        ax.axvline(train_len, color="black", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set(title=task, xlabel="sequence length (tokens)", ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3, which="both")
    return _finish_panels(fig, axes, "prefix sequence accuracy", "lower left", title, path)
