"""Perplexity against token position (the paper's Figure 5: trained at 2k tokens, evaluated far beyond).

The text is one token stream (documents joined by EOS) cut into windows of ``max_length`` tokens; each window is
read from an empty state, and the loss of predicting token t + 1 is averaged over windows per position t, then
over bins of positions. The loss comes from the fused linear + cross-entropy per token, so no window's fp32
logits are ever held whole.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from tqdm import tqdm

from statetrack.ops import linear_cross_entropy


def read_token_stream(path: str | Path, tokenizer, max_tokens: int | None = None) -> torch.Tensor:
    """The tokens [N] of ``path``: a prepared dataset folder (``statetrack data prepare``: its validation split,
    documents as stored, [BOS] ... EOS), a .txt (documents = blocks separated by blank lines) or a .jsonl (field
    "text"), EOS after each document. ValueError naming the path when it is missing, holds no text, or (a
    dataset) was tokenized for a larger vocabulary than ``tokenizer``'s."""
    p = Path(path)
    if p.is_dir():
        return _dataset_stream(p, tokenizer, max_tokens)
    if not p.is_file():
        raise ValueError(f"data: {str(p)!r} is not a file or a prepared dataset folder")
    if p.suffix == ".jsonl":
        docs = [json.loads(line)["text"] for line in p.read_text().splitlines() if line.strip()]
    else:
        docs = [d for d in p.read_text().split("\n\n") if d.strip()]
    if not docs:
        raise ValueError(f"data: {str(p)!r} holds no text")
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    ids: list[int] = []
    for d in docs:
        ids += tokenizer(d, add_special_tokens=False).input_ids + eos
        if max_tokens is not None and len(ids) >= max_tokens:
            break
    return torch.tensor(ids[:max_tokens], dtype=torch.long)


def _dataset_stream(folder: Path, tokenizer, max_tokens: int | None) -> torch.Tensor:
    import numpy as np

    from .data_shards import TokenShards

    shards = TokenShards(folder, "validation")
    if shards.vocab_size > len(tokenizer):
        raise ValueError(f"data: {str(folder)!r} was tokenized with {shards.meta.get('tokenizer')!r} (vocab "
                         f"{shards.vocab_size}), larger than the model's tokenizer ({len(tokenizer)})")  # fmt: skip
    parts, n = [], 0
    for i in range(shards.documents):
        parts.append(np.asarray(shards.document(i), dtype=np.int64))
        n += len(parts[-1])
        if max_tokens is not None and n >= max_tokens:
            break
    return torch.from_numpy(np.concatenate(parts)[:max_tokens])


@torch.no_grad()
def position_nll(model, tokens: torch.Tensor, max_length: int, batch_size: int = 1, max_windows: int | None = None,
                 progress: bool = True) -> torch.Tensor:  # fmt: skip
    """Mean next-token loss at each position: tokens [N] -> nll [max_length - 1] (nats), averaged over the
    floor(N / max_length) windows (at most ``max_windows``)."""
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2, got {max_length}")
    n = tokens.numel() // max_length
    if max_windows is not None:
        n = min(n, max_windows)
    if n == 0:
        raise ValueError(f"data: {tokens.numel()} tokens do not fill one window of max_length = {max_length}")
    dev = next(model.parameters()).device
    windows = tokens[: n * max_length].view(n, max_length)
    total = torch.zeros(max_length - 1, dtype=torch.float64, device=dev)
    bar = tqdm(total=n, unit="window", disable=not progress, desc="perplexity")
    for s in range(0, n, batch_size):
        ids = windows[s : s + batch_size].to(dev)
        h = model.model(input_ids=ids, use_cache=False).last_hidden_state[:, :-1]
        loss = linear_cross_entropy(h.reshape(-1, h.shape[-1]), model.lm_head.weight, ids[:, 1:].reshape(-1),
                                    reduction="none")  # fmt: skip
        total += loss.view(ids.shape[0], -1).double().sum(0)
        bar.update(ids.shape[0])
    bar.close()
    return (total / n).cpu()


def binned(nll: torch.Tensor, bins: int = 64) -> dict:
    """Per-position losses [L] -> {"position": bin ends, "nll", "ppl"} over ``bins`` equal bins of positions."""
    L = nll.numel()
    edges = sorted({max(1, round(L * (i + 1) / bins)) for i in range(bins)})
    out, start = {"position": [], "nll": [], "ppl": []}, 0
    for e in edges:
        m = float(nll[start:e].mean())
        out["position"].append(e)
        out["nll"].append(m)
        out["ppl"].append(math.exp(m))
        start = e
    return out


def plot(curves: dict[str, dict], path: str | Path, train_length: int | None = None) -> None:
    """Perplexity against position, one line per model (``curves``: label -> :func:`binned` output)."""
    from statetrack.plotting import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, c in curves.items():
        ax.plot(c["position"], c["ppl"], label=label)
    if train_length:
        ax.axvline(train_length, color="gray", ls="--", lw=1, label=f"training length {train_length}")
    ax.set(xlabel="token position", ylabel="perplexity", xscale="log", yscale="log", title="Perplexity by position")
    ax.legend()
    save_figure(fig, path)
