"""Evaluation of a token classifier on a batch of task sequences: accuracy, scaled accuracy, per length.

Metrics (paper.md section 4):
- accuracy: over sequences, a sequence counts as correct when every masked position is predicted right
  (Chomsky tasks have one masked answer position, so this is the answer accuracy);
- scaled accuracy = (accuracy - chance) / (1 - chance): 1 is perfect, 0 is chance;
- per length: the same, for the sequences of each length;
- prefix accuracy (group tasks, label at every position): at length L, the fraction of sequences whose
  predictions at positions 1..L are all right.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from statetrack.tasks.metrics import prefix_accuracy

from .config import ExperimentConfig, sample_lengths


@dataclass
class EvalResult:
    """Scalar metrics plus per-length tables (length -> value)."""

    loss: float
    accuracy: float
    scaled_accuracy: float
    token_accuracy: float
    n_sequences: int
    per_length: dict[int, float] = field(default_factory=dict)
    scaled_per_length: dict[int, float] = field(default_factory=dict)
    count_per_length: dict[int, int] = field(default_factory=dict)
    prefix_accuracy: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "scaled_accuracy": self.scaled_accuracy,
            "token_accuracy": self.token_accuracy,
            "n_sequences": self.n_sequences,
            "per_length": {str(k): v for k, v in self.per_length.items()},
            "scaled_per_length": {str(k): v for k, v in self.scaled_per_length.items()},
            "count_per_length": {str(k): v for k, v in self.count_per_length.items()},
            "prefix_accuracy": {str(k): v for k, v in self.prefix_accuracy.items()},
        }


def eval_batch(cfg: ExperimentConfig, task):
    """The fixed evaluation set of a run: the task's test set (``train.eval_size``), or ``train.eval_samples``
    sequences of ``train.eval_lengths`` (default: the task's test lengths) from a fixed seed."""
    t = cfg.train
    if t.eval_samples > 0:
        lengths = sample_lengths(t.eval_lengths) or tuple(task.test_lengths)
        return task.sample(t.eval_samples, generator=torch.Generator().manual_seed(2**31 - 1), lengths=lengths)
    return task.test_set(size=t.eval_size)


def scaled(acc: float, chance: float) -> float:
    """(acc - chance) / (1 - chance)."""
    return (acc - chance) / (1.0 - chance)


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()


@torch.no_grad()
def evaluate(model, batch, chance: float, *, batch_size: int = 512, device=None, amp: bool = False,
             prefix: bool = False) -> EvalResult:  # fmt: skip
    """Evaluate ``model`` (tokens [B, T] -> logits [B, T, V]) on a task Batch (input, target, mask [N, T],
    lengths [N]). Sequences are sorted by length and each chunk is cut after its last masked position, which
    is exact for causal models and saves the padding. ``prefix`` adds the prefix accuracy (group tasks)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    inp, tgt, mask, lengths = batch.input, batch.target, batch.mask, batch.lengths
    N, T = inp.shape
    # last position each sequence needs (its last masked one)
    pos = torch.arange(T)
    need = torch.where(mask, pos, -1).amax(1) + 1
    order = torch.argsort(need, stable=True)
    seq_ok = torch.zeros(N, dtype=torch.bool)
    tok_right = tok_total = 0
    loss_sum = 0.0
    pred = torch.full((N, T), -1, dtype=torch.long) if prefix else None  # positions never run stay unlabelled
    for s in range(0, N, batch_size):
        idx = order[s : s + batch_size]
        t_end = max(int(need[idx].max()), 1)
        x, y, m = (t[idx, :t_end].to(device) for t in (inp, tgt, mask))
        with _autocast(device, amp):
            logits = model(x)
        logits = logits.float()
        right = (logits.argmax(-1) == y) | ~m
        seq_ok[idx] = right.all(1).cpu()
        tok_right += int((right & m).sum())
        tok_total += int(m.sum())
        loss_sum += float(F.cross_entropy(logits[m], y[m], reduction="sum"))
        if prefix:
            pred[idx, :t_end] = logits.argmax(-1).cpu()
    if was_training:
        model.train()
    acc = float(seq_ok.float().mean()) if N else float("nan")
    res = EvalResult(
        loss=loss_sum / max(tok_total, 1),
        accuracy=acc,
        scaled_accuracy=scaled(acc, chance),
        token_accuracy=tok_right / max(tok_total, 1),
        n_sequences=N,
    )
    for L in sorted(set(lengths.tolist())):
        sel = lengths == L
        a = float(seq_ok[sel].float().mean())
        res.per_length[int(L)] = a
        res.scaled_per_length[int(L)] = scaled(a, chance)
        res.count_per_length[int(L)] = int(sel.sum())
    if prefix:  # keyed by position, the prefix length for group tasks (<bos> at 0)
        curve = prefix_accuracy(pred, tgt, mask)
        points = zip(curve.x.tolist(), curve.acc.tolist(), curve.n.tolist(), strict=True)
        res.prefix_accuracy = {x: a for x, a, n in points if n}
    return res
