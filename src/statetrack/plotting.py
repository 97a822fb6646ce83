"""Figures as PNG files, for every room that plots: matplotlib on its Agg backend (no display needed),
imported on first use so that importing statetrack never pulls matplotlib in."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def pyplot():
    """``matplotlib.pyplot``, on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Lay ``fig`` out, write it to ``path`` (parent folders made) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def running_mean(values: Sequence[float], before: int, after: int = 0) -> list[float]:
    """Mean of each value with up to ``before`` values before it and ``after`` after it (fewer at the ends)."""
    out = []
    for i in range(len(values)):
        win = values[max(0, i - before) : i + after + 1]
        out.append(sum(win) / len(win))
    return out
