"""The trainer's batches: fresh samples by (seed, step), or exact epochs over a task's fixed training set."""

from __future__ import annotations

import torch

from statetrack.tasks import get_task
from statetrack.train.prefetch import Prefetcher


def test_a_fixed_training_set_is_read_in_exact_epochs():
    task = get_task("parity", train_set_size=12)
    pre = Prefetcher(task, batch_size=4, seed=3, lengths=None, end=10, workers=0)
    batches = [pre.get(s) for s in range(6)]
    for s, b in enumerate(batches):
        ref = task.epoch_batch(3, s, 4)
        assert torch.equal(b.input, ref.input) and torch.equal(b.target, ref.target)
    # the first 3 batches are one epoch: 12 distinct sequences of the set
    first = {tuple(r.tolist()) for b in batches[:3] for r in b.input}
    assert len(first) == 12


def test_fresh_samples_without_a_fixed_set_depend_on_seed_and_step_only():
    task = get_task("parity")
    a = Prefetcher(task, batch_size=4, seed=1, lengths=None, end=5, workers=0).get(2)
    b = Prefetcher(task, batch_size=4, seed=1, lengths=None, end=5, workers=2)
    assert torch.equal(a.input, b.get(2).input)
    b.close()
