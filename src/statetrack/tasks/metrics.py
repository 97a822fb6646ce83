"""Metrics of the paper and its anchors, computed from predictions and a :class:`Batch`'s target and mask.

Glossary: B sequences, T positions, V vocabulary. ``pred`` is either predicted ids LongTensor [B, T] or
logits [B, T, V] (argmax is taken). Only positions where ``mask`` is True count.

- token accuracy, sequence accuracy (all labels of a sequence right) and scaled accuracy
  (acc - chance) / (1 - chance), the paper's Chomsky metric;
- per-length curves with 95% Wilson intervals: answer accuracy by sequence length (Chomsky tasks), token
  accuracy by position, and prefix ("cumulative") sequence accuracy by position (fraction of sequences whose
  labels at positions 1..l are all right; the group-task curves of the paper and DeltaProduct);
- L_tau: the largest length up to which a curve stays >= tau (tau = 0.9 by default);
- across seeds: best-of-n and median +- MAD (median absolute deviation, unscaled).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import torch


def predictions(pred: torch.Tensor) -> torch.Tensor:
    """Ids [B, T] from ids [B, T] or logits [B, T, V]."""
    if pred.dim() == 3:
        return pred.argmax(dim=-1)
    if pred.dim() != 2:
        raise ValueError(f"pred must be ids [B, T] or logits [B, T, V], got shape {list(pred.shape)}")
    return pred


def correct(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BoolTensor [B, T]: True where a label counts and the prediction equals it."""
    ids = predictions(pred)
    if ids.shape != target.shape or mask.shape != target.shape:
        raise ValueError(
            f"pred (ids) {list(ids.shape)}, target {list(target.shape)} and mask {list(mask.shape)} must "
            "have the same shape [B, T]"
        )
    return (ids == target) & mask.bool()


def scaled_accuracy(acc, chance: float):
    """(acc - chance) / (1 - chance): 1 is perfect, 0 is chance level. Works on floats and tensors."""
    if not 0.0 <= chance < 1.0:
        raise ValueError(f"chance must be in [0, 1), got {chance}")
    return (acc - chance) / (1.0 - chance)


def constant_answer_baseline(target: torch.Tensor, mask: torch.Tensor, chance: float) -> dict:
    """The best single answer: the label that is most often right where ``mask`` is True, as if a model
    always gave it. Returns {"answer": id, "accuracy", "scaled_accuracy"} (scaled with ``chance``).

    A model at or below this score has learned nothing a constant could not do; e.g. on the bracket task with
    ``*``, answering 0 is right far more often than 1 in 5 (a product with a 0 factor is 0).
    """
    labels = target[mask]
    if labels.numel() == 0:
        raise ValueError("constant_answer_baseline: mask selects no label")
    ids, counts = torch.unique(labels, return_counts=True)
    best = int(counts.argmax())
    acc = float(counts[best]) / labels.numel()
    return {"answer": int(ids[best]), "accuracy": acc, "scaled_accuracy": scaled_accuracy(acc, chance)}


def token_accuracy(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """Fraction of labelled positions predicted right (for Chomsky tasks: answer accuracy)."""
    n = int(mask.sum())
    if n == 0:
        raise ValueError("mask has no labelled position")
    return int(correct(pred, target, mask).sum()) / n


def sequence_accuracy(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """Fraction of sequences with every labelled position right."""
    wrong = (mask.bool() & ~correct(pred, target, mask)).any(dim=1)
    return float((~wrong).double().mean())


def wilson_interval(k: torch.Tensor, n: torch.Tensor, confidence: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Wilson score interval of a proportion k / n, elementwise (exact-ish near 0 and 1, unlike mean +- 2 SE).

    k, n: tensors of counts (same shape). Returns (lo, hi) float64 tensors; nan where n = 0.
    """
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    k, n = k.double(), n.double()
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * torch.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at k = 0 and k = n the bounds are exactly 0 and 1; pin them against rounding
    lo = torch.where(k == 0, 0.0, (center - half).clamp(0, 1))
    hi = torch.where(k == n, 1.0, (center + half).clamp(0, 1))
    return lo, hi


@dataclass(frozen=True)
class Curve:
    """A per-length curve: at each x, the accuracy over ``n`` items with a ``confidence`` interval [lo, hi].

    x: LongTensor [K] (length, or position = number of tokens read); acc, lo, hi: float64 [K] (nan where
    n = 0); n: LongTensor [K].
    """

    x: torch.Tensor
    acc: torch.Tensor
    n: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor

    def scaled(self, chance: float) -> Curve:
        """The same curve in scaled accuracy."""
        return Curve(
            self.x, scaled_accuracy(self.acc, chance), self.n, scaled_accuracy(self.lo, chance),
            scaled_accuracy(self.hi, chance),
        )  # fmt: skip

    def mean(self) -> float:
        """Mean of the per-x accuracies over points with data (the DM score when x are lengths)."""
        keep = self.n > 0
        return float(self.acc[keep].mean()) if bool(keep.any()) else math.nan

    def as_dict(self) -> dict[str, list]:
        return {k: getattr(self, k).tolist() for k in ("x", "acc", "n", "lo", "hi")}


def _curve(x: torch.Tensor, k: torch.Tensor, n: torch.Tensor, confidence: float) -> Curve:
    acc = k.double() / n.double()
    lo, hi = wilson_interval(k, n, confidence)
    return Curve(x.long(), acc, n.long(), lo, hi)


def accuracy_by_length(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    lengths: torch.Tensor,
    *,
    bins: Sequence[int] | None = None,
    confidence: float = 0.95,
) -> Curve:
    """Label accuracy grouped by sequence length (``Batch.lengths``), the paper's per-length Chomsky curve.

    bins: optional increasing edges e_0 < e_1 < ...; lengths in [e_i, e_{i+1}) pool into the point x = e_i
    (lengths outside are dropped). n counts labels (one per sequence for Chomsky tasks).
    """
    ok = correct(pred, target, mask).sum(dim=1)
    cnt = mask.bool().sum(dim=1)
    key = lengths.long()
    if bins is not None:
        edges = torch.as_tensor(list(bins), dtype=torch.long)
        if edges.numel() < 2 or bool((edges[1:] <= edges[:-1]).any()):
            raise ValueError(f"bins must be at least 2 increasing edges, got {list(bins)}")
        idx = torch.bucketize(key, edges, right=True) - 1
        inside = (idx >= 0) & (idx < edges.numel() - 1)
        key, ok, cnt = edges[idx[inside]], ok[inside], cnt[inside]
    xs, inv = torch.unique(key, return_inverse=True)
    k = torch.zeros(xs.numel(), dtype=torch.long).index_add_(0, inv, ok.long())
    n = torch.zeros(xs.numel(), dtype=torch.long).index_add_(0, inv, cnt.long())
    return _curve(xs, k, n, confidence)


def accuracy_by_position(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *, confidence: float = 0.95
) -> Curve:
    """Token accuracy at each position p = 0..T-1 (for group tasks with ``<bos>``, p = tokens read)."""
    ok = correct(pred, target, mask).sum(dim=0)
    n = mask.bool().sum(dim=0)
    return _curve(torch.arange(mask.shape[1]), ok, n, confidence)


def prefix_accuracy(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *, confidence: float = 0.95) -> Curve:
    """Prefix ("cumulative") sequence accuracy at each position p = 0..T-1: among sequences with a label at
    p, the fraction whose labels at all positions <= p are right (DeltaProduct's
    ``cumulative_sequence_accuracies``; with ``<bos>`` at 0, p is the length l of the prefix)."""
    m = mask.bool()
    bad = m & ~correct(pred, target, mask)
    prefix_ok = bad.long().cumsum(dim=1) == 0
    k = (prefix_ok & m).sum(dim=0)
    n = m.sum(dim=0)
    return _curve(torch.arange(mask.shape[1]), k, n, confidence)


def l_tau(curve: Curve, tau: float = 0.9) -> int:
    """Largest x such that the curve is >= tau at every point with data up to and including x (0 if the
    first such point is already below tau). On a prefix-accuracy curve: the longest length solved."""
    best = 0
    for x, acc, n in zip(curve.x.tolist(), curve.acc.tolist(), curve.n.tolist(), strict=True):
        if n == 0:
            continue
        if acc < tau:
            break
        best = x
    return best


def best_of(values: Sequence[float], *, higher_is_better: bool = True) -> float:
    """Best value across seeds (the paper's Table 3: best of 3)."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("values is empty")
    return max(vals) if higher_is_better else min(vals)


def median_mad(values: Sequence[float]) -> tuple[float, float]:
    """(median, median absolute deviation) across seeds (the paper's Table 5), MAD unscaled."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("values is empty")
    med = statistics.median(vals)
    return med, statistics.median(abs(v - med) for v in vals)


def seed_summary(values: Sequence[float], *, higher_is_better: bool = True) -> dict[str, float]:
    """best, median, mad, mean, min, max and n of a metric across seeds."""
    vals = [float(v) for v in values]
    med, mad = median_mad(vals)
    return {
        "n": len(vals),
        "best": best_of(vals, higher_is_better=higher_is_better),
        "median": med,
        "mad": mad,
        "mean": statistics.fmean(vals),
        "min": min(vals),
        "max": max(vals),
    }
