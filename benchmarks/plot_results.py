"""Bar charts of the stored H100 results (the numbers come from the Markdown tables under results/benchmarks/h100/).

    python -m benchmarks.plot_results [--out results/benchmarks/h100/summary.png]

Left: training steps/s of the paper's parity model per mixer (CUDA graph, with and without torch.compile),
with flash-linear-attention's DeltaNet model and the 180 steps/s target as lines. Right: forward+backward ms
of the delta rule at the issue's shapes, ours (backend="triton") against fla's best path.

Where a later file measured what the library now runs, it wins: Mamba's compiled rate comes from
``train_loop_mamba_selective_paths.md`` (the default selective-scan settings' row), and shapes the API now
runs token by token but runs 5 and 6 did not take "ours recurrent" from the ``delta_rule_short*`` files.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from statetrack.ops.delta_rule import prefers_recurrent

from .harness import RESULTS

H100 = RESULTS / "h100"


def tables(path: Path) -> list[list[list[str]]]:
    """The Markdown tables of a file, as rows of cells (header first, separator dropped)."""
    out, cur = [], []
    for line in path.read_text().splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                cur.append(cells)
        elif cur:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def first_ms(cell: str) -> float | None:
    m = re.match(r"\s*([0-9.]+)", cell)
    return float(m.group(1)) if m else None


# the row of train_loop_mamba_selective_paths.md run with what are now the default settings
MAMBA_DEFAULT = "steps:checkpoint_steps=8"


def routed_recurrent(shape: str) -> bool:
    """Whether backend="triton" now runs this "B, T, H, D" shape token by token where runs 5 and 6 did not: they
    predate the wide-batch rule (token by token for longer sequences when there are many of them), so they ran it
    token by token only where one sequence alone would be."""
    B, T, H, D = (int(x) for x in shape.split(","))
    return prefers_recurrent(T, D, B * H) and not prefers_recurrent(T, D, 1)


def build_parser():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=H100 / "summary.png")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    graph, compiled = tables(H100 / "train_loop.md")[:2]
    mixers = [r[0] for r in graph[1:]]
    rate_g = [float(r[2]) for r in graph[1:]]
    rate_c = [float(r[2]) for r in compiled[1:]]
    for r in tables(H100 / "train_loop_mamba_selective_paths.md")[0][1:]:
        if r[0] == f"mamba (selective scan: {MAMBA_DEFAULT})":
            rate_c[mixers.index("mamba")] = float(r[2])

    recurrent = {}  # shape -> ours recurrent ms, the later file winning
    for f in sorted(H100.glob("delta_rule_short*.md")):
        for t in tables(f):
            if "ours recurrent" in t[0]:
                recurrent.update({r[0]: first_ms(r[t[0].index("ours recurrent")]) for r in t[1:]})
    shapes, ours, fla = [], [], []
    # run 5 measured the short shapes, run 6 the long ones (each call of the device has a time limit)
    for run in ("delta_rule_kernels_run5.md", "delta_rule_kernels_run6.md"):
        speed = tables(H100 / run)[-1]
        col = {name: i for i, name in enumerate(speed[0])}
        for r in speed[1:]:
            best = [v for v in (first_ms(r[col["fla chunk"]]), first_ms(r[col["fla fused_recurrent"]])) if v]
            if best:
                shapes.append(r[0])
                ours.append(recurrent.get(r[0]) if routed_recurrent(r[0]) else first_ms(r[col["ours"]]))
                fla.append(min(best))

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2))
    x = range(len(mixers))
    a.bar([i - 0.2 for i in x], rate_g, 0.4, label="CUDA graph")
    a.bar([i + 0.2 for i in x], rate_c, 0.4, label="CUDA graph + torch.compile")
    a.axhline(36, color="gray", ls="--", label="fla DeltaNet model (36)")
    a.axhline(180, color="red", ls=":", label="target for DeltaNet (180)")
    a.set_xticks(list(x), mixers, rotation=20)
    a.set_ylabel("training steps / s")
    a.set_title("parity model, batch 1024, T <= 40 (H100)")
    a.legend(fontsize=8)
    x = range(len(shapes))
    b.bar([i - 0.2 for i in x], ours, 0.4, label="ours (triton)")
    b.bar([i + 0.2 for i in x], fla, 0.4, label="fla, best path")
    b.set_xticks(list(x), shapes, rotation=15, fontsize=8)
    b.set_ylabel("forward + backward ms (lower is better)")
    b.set_title("delta rule, bf16 (H100)")
    b.set_yscale("log")
    b.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
