"""Which transition eigenvalues a trained language model actually uses, per layer and head, on real text.

What the paper leaves open: how much of [-1, 0) a language model trained with min_eigenvalue = -1 uses. Each
layer's mixer input is caught with a forward hook while the model reads the text; the mixer's
``transition_eigenvalues`` gives, per token: DeltaNet family 1 - beta along the key (times the gate; for
DeltaProduct the eigenvalues of the per-token product), Mamba and the diagonal RNN their diagonal a. Reported:
their distribution (real parts), the fractions below 0 and below -0.5, and the tokens that drive them lowest.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from statetrack.layers import DeltaNet

HIST_EDGES = torch.linspace(-1.0, 1.0, 41)


@torch.no_grad()
def transition_spectra(model, input_ids: torch.Tensor) -> list[torch.Tensor | None]:
    """Per layer, the real parts of the transition eigenvalues on input_ids [B, T]: [B, T, heads, m] (DeltaNet
    family; m = n_h) or [B, T, channels] (diagonal mixers, states flattened); None for mixers without."""
    inputs: dict[int, torch.Tensor] = {}
    hooks = [block.mixer.register_forward_pre_hook(lambda mod, args, i=i: inputs.__setitem__(i, args[0]))
             for i, block in enumerate(model.model.layers)]  # fmt: skip
    try:
        model.model(input_ids=input_ids, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    out = []
    for i, block in enumerate(model.model.layers):
        fn = getattr(block.mixer, "transition_eigenvalues", None)
        if fn is None:
            out.append(None)
            continue
        ev = fn(inputs[i])
        ev = ev.real if ev.is_complex() else ev
        # per head for the DeltaNet family; the diagonal mixers' channels (and Mamba's states) as one axis
        out.append(ev.float() if isinstance(block.mixer, DeltaNet) else ev.float().flatten(2))
    return out


def _stats(x: torch.Tensor) -> dict:
    x = x.flatten()
    q = torch.quantile(x[torch.randperm(x.numel())[:1_000_000]] if x.numel() > 1_000_000 else x,
                       torch.tensor([0.01, 0.1, 0.5, 0.9, 0.99]))  # fmt: skip
    return {"n": x.numel(), "min": float(x.min()), "mean": float(x.mean()),
            "below_0": float((x < 0).double().mean()), "below_-0.5": float((x < -0.5).double().mean()),
            "quantiles": dict(zip(["1%", "10%", "50%", "90%", "99%"], (float(v) for v in q), strict=True))}  # fmt: skip


def inspect(model, tokenizer, tokens: torch.Tensor, window: int = 2048, top: int = 10) -> dict:
    """Eigenvalue report of ``model`` on tokens [N] read in windows of ``window`` tokens (each from an empty
    state): per layer its mixer, overall stats, per-head stats (DeltaNet family), a histogram over [-1, 1] and the
    ``top`` tokens with the lowest eigenvalue (with a little context)."""
    dev = next(model.parameters()).device
    n = max(1, tokens.numel() // window)
    windows = tokens[: n * window].view(n, -1) if tokens.numel() >= window else tokens[None]
    per_layer: list[list[torch.Tensor]] = [[] for _ in model.model.layers]
    for w in windows:
        for i, ev in enumerate(transition_spectra(model, w[None].to(dev))):
            if ev is not None:
                per_layer[i].append(ev[0].cpu())
    flat = windows.reshape(-1)
    layers = []
    for i, (block, evs) in enumerate(zip(model.model.layers, per_layer, strict=True)):
        entry = {"layer": i, "mixer": block.mixer.mixer_name,
                 "min_eigenvalue": getattr(block.mixer, "min_eigenvalue", None)}  # fmt: skip
        if not evs:
            layers.append(entry)
            continue
        ev = torch.cat(evs)  # [N, heads, m] or [N, channels]
        entry.update(_stats(ev))
        counts = torch.histc(ev.clamp(-1, 1), bins=40, min=-1, max=1).long().tolist()
        entry["histogram"] = {"edges": HIST_EDGES.tolist(), "counts": counts}
        if ev.dim() == 3:
            entry["per_head"] = [_stats(ev[:, h]) for h in range(ev.shape[1])]
        lowest = ev.reshape(ev.shape[0], -1).min(1).values
        order = lowest.argsort()[:top].tolist()
        entry["lowest_tokens"] = [{"position": p, "eigenvalue": float(lowest[p]),
                                   "token": tokenizer.decode([int(flat[p])]),
                                   "context": tokenizer.decode(flat[max(0, p - 8) : p + 1].tolist())}
                                  for p in order]  # fmt: skip
        layers.append(entry)
    return {"tokens": int(flat.numel()), "window": window, "layers": layers}


def plot(report: dict, path: str | Path) -> None:
    """One histogram per layer of the eigenvalues' real parts over [-1, 1], the share below 0 in the title."""
    from statetrack.plotting import pyplot, save_figure

    rows = [e for e in report["layers"] if "histogram" in e]
    if not rows:
        raise ValueError("the model has no layer with transition eigenvalues to plot")
    plt = pyplot()
    cols = min(4, len(rows))
    nrows = (len(rows) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.4 * nrows), squeeze=False)
    for ax in axes.flat[len(rows) :]:
        ax.axis("off")
    for ax, e in zip(axes.flat, rows, strict=False):
        edges, counts = e["histogram"]["edges"], e["histogram"]["counts"]
        ax.bar(edges[:-1], counts, width=edges[1] - edges[0], align="edge", log=True)
        ax.axvline(0, color="k", lw=0.6)
        ax.set_title(f"layer {e['layer']} {e['mixer']}: {e['below_0']:.1%} < 0", fontsize=8)
    fig.suptitle(f"transition eigenvalues on {report['tokens']} tokens")
    save_figure(fig, path)


def save(report: dict, out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eigenvalues.json").write_text(json.dumps(report, indent=1))
    plot(report, out / "eigenvalues.png")
    return out / "eigenvalues.json", out / "eigenvalues.png"
