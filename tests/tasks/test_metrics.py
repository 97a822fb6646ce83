"""Metrics on hand-made predictions."""

from __future__ import annotations

import math

import pytest
import torch

from statetrack.tasks import get_task, metrics


def test_scaled_accuracy():
    assert metrics.scaled_accuracy(0.5, 0.5) == 0 and metrics.scaled_accuracy(1.0, 0.2) == 1
    assert metrics.scaled_accuracy(0.6, 0.2) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="chance"):
        metrics.scaled_accuracy(0.5, 1.0)


def test_prefix_accuracy_and_l_tau():
    # 3 sequences, <bos> at 0 (no label), labels at 1..4; row 0 all right, row 1 wrong at 3, row 2 wrong at 1
    target = torch.tensor([[9, 1, 2, 3, 4]] * 3)
    mask = torch.tensor([[False, True, True, True, True]] * 3)
    pred = target.clone()
    pred[1, 3] = 0
    pred[2, 1] = 0
    curve = metrics.prefix_accuracy(pred, target, mask)
    assert curve.x.tolist() == [0, 1, 2, 3, 4] and curve.n.tolist() == [0, 3, 3, 3, 3]
    assert math.isnan(curve.acc[0]) and curve.acc[1:].tolist() == pytest.approx([2 / 3, 2 / 3, 1 / 3, 1 / 3])
    assert metrics.l_tau(curve, 0.6) == 2 and metrics.l_tau(curve, 0.9) == 0 and metrics.l_tau(curve, 0.3) == 4
    tok = metrics.accuracy_by_position(pred, target, mask)
    assert tok.acc[1:].tolist() == pytest.approx([2 / 3, 1, 2 / 3, 1])
    assert metrics.token_accuracy(pred, target, mask) == pytest.approx(10 / 12)
    assert metrics.sequence_accuracy(pred, target, mask) == pytest.approx(1 / 3)
    logits = torch.nn.functional.one_hot(pred, 10).float()
    assert metrics.prefix_accuracy(logits, target, mask).acc[1:].tolist() == curve.acc[1:].tolist()


def test_accuracy_by_length_with_bins_and_ci():
    task = get_task("parity")
    b = task.sample(600, generator=0, lengths=(40, 60))
    pred = b.target.clone()
    wrong = b.lengths >= 50  # right below 50, always wrong from 50 on
    rows = torch.nonzero(wrong).squeeze(1)
    pred[rows, b.lengths[rows] - 1] = 1 - pred[rows, b.lengths[rows] - 1]
    curve = metrics.accuracy_by_length(pred, b.target, b.mask, b.lengths)
    assert curve.x.tolist() == list(range(40, 61)) and int(curve.n.sum()) == 600
    assert curve.acc.tolist() == [1.0] * 10 + [0.0] * 11
    assert bool((curve.lo <= curve.acc).all()) and bool((curve.hi >= curve.acc).all())
    binned = metrics.accuracy_by_length(pred, b.target, b.mask, b.lengths, bins=[40, 50, 61])
    assert binned.x.tolist() == [40, 50] and binned.acc.tolist() == [1.0, 0.0]
    assert binned.scaled(0.5).acc.tolist() == [1.0, -1.0]
    assert curve.mean() == pytest.approx(10 / 21)


def test_wilson_interval_known_values():
    lo, hi = metrics.wilson_interval(torch.tensor([0, 5]), torch.tensor([10, 10]))
    assert lo[0] == 0 and hi[0] == pytest.approx(3.8415 / 13.8415, abs=1e-4)
    assert lo[1] == pytest.approx(0.2366, abs=1e-3) and hi[1] == pytest.approx(0.7634, abs=1e-3)


def test_seed_aggregation():
    assert metrics.median_mad([1.0, 2.0, 10.0]) == (2.0, 1.0)
    assert metrics.best_of([0.2, 0.9, 0.5]) == 0.9 and metrics.best_of([3, 1], higher_is_better=False) == 1
    s = metrics.seed_summary([0.999, 1.0, 0.98])
    assert s["best"] == 1.0 and s["median"] == 0.999 and s["mad"] == pytest.approx(0.001) and s["n"] == 3


def test_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        metrics.token_accuracy(
            torch.zeros(2, 3, dtype=torch.long),
            torch.zeros(2, 4, dtype=torch.long),
            torch.ones(2, 4, dtype=torch.bool),
        )
