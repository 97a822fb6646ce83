"""Tables and plots of evaluation results (text for the terminal, PNG via matplotlib's Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from statetrack.plotting import pyplot, running_mean, save_figure


def format_table(headers: Sequence[str], rows: Sequence[Sequence], floatfmt: str = ".3f") -> str:
    """A plain aligned text table."""
    cells = [[(format(c, floatfmt) if isinstance(c, float) else str(c)) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def length_bins(per_length: dict[int, float], counts: dict[int, int], n_bins: int = 8) -> list[tuple[str, float, int]]:
    """Group a per-length table into about ``n_bins`` contiguous length ranges: (range, weighted mean, count)."""
    Ls = sorted(per_length)
    if not Ls:
        return []
    if len(Ls) <= n_bins:
        return [(str(L), per_length[L], counts.get(L, 1)) for L in Ls]
    size = -(-len(Ls) // n_bins)
    out = []
    for i in range(0, len(Ls), size):
        grp = Ls[i : i + size]
        n = sum(counts.get(L, 1) for L in grp)
        mean = sum(per_length[L] * counts.get(L, 1) for L in grp) / n
        out.append((f"{grp[0]}-{grp[-1]}", mean, n))
    return out


def plot_vs_length(series: dict[str, dict[int, float]], path: str | Path, ylabel: str, title: str = "",
                   smooth: int = 1) -> Path:  # fmt: skip
    """One line per label: value against length (optionally a running mean over ``smooth`` lengths)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, d in series.items():
        Ls = sorted(d)
        ax.plot(Ls, running_mean([d[L] for L in Ls], before=max(smooth, 1) - 1), label=label)
    ax.set_xlabel("sequence length")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path, dpi=120)
