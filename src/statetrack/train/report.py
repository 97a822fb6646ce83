"""Tables and plots of evaluation results (text for the terminal, PNG via matplotlib's Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


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


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_vs_length(series: dict[str, dict[int, float]], path: str | Path, ylabel: str, title: str = "",
                   smooth: int = 1) -> Path:  # fmt: skip
    """One line per label: value against length (optionally a running mean over ``smooth`` lengths)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, d in series.items():
        Ls = sorted(d)
        ys = [d[L] for L in Ls]
        if smooth > 1:
            ys = [sum(ys[max(0, i - smooth + 1) : i + 1]) / len(ys[max(0, i - smooth + 1) : i + 1])
                  for i in range(len(ys))]  # fmt: skip
        ax.plot(Ls, ys, label=label)
    ax.set_xlabel("sequence length")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
