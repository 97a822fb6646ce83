"""train.evaluate agrees with the task suite's metrics."""

from __future__ import annotations

import torch

from statetrack.tasks import get_task, metrics
from statetrack.train import evaluate


class _Guess(torch.nn.Module):
    """A causal stand-in model: logits that depend only on the current token (some right, some wrong)."""

    def __init__(self, vocab: int):
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        return self.table[x]


def test_prefix_accuracy_keys_match_tasks_metrics():
    task = get_task("s3")
    batch = task.sample(64, generator=torch.Generator().manual_seed(1), lengths=12)
    model = _Guess(task.vocab_size)
    # predict the input element: right at the first label (y_1 = x_1), then only where the product happens to match
    with torch.no_grad():
        model.table.copy_(torch.eye(task.vocab_size) * 5)
    res = evaluate(model, batch, task.chance, prefix=True)
    curve = metrics.prefix_accuracy(model(batch.input), batch.target, batch.mask)
    want = {int(x): float(a) for x, a, n in zip(curve.x, curve.acc, curve.n, strict=True) if n > 0}
    assert res.prefix_accuracy.keys() == want.keys()
    for k, v in want.items():
        assert abs(res.prefix_accuracy[k] - v) < 1e-9, k
    assert min(want) == 1  # the first label (after <bos>) is the prefix of length 1
    assert any(0.0 < v < 1.0 for v in want.values())  # not vacuous: some prefixes are right, some are not
