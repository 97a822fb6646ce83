"""Task data generation vs one CPU training step on the same batch (issue: state-tracking task suite).

    python -m benchmarks.tasks_throughput [--repeats 5] [--paper-test-sets] [--tasks parity,s5] [--batch-size N]
        [--no-test-sets] [--out results/benchmarks/cpu/tasks_throughput.txt]

For every registered task: the median time to draw one training batch (Chomsky tasks: 1024 sequences at the train
lengths 3-40 and 1024 at the longest train length; group tasks: 512 sequences of 64 tokens), next to the median time of
one training step (the trainer's eager step: forward, masked cross-entropy, backward, AdamW) on that batch for two
reference models:

- floor: embedding d=128 + linear head, no token mixing at all; no real model's step can be cheaper;
- lstm: embedding d=128, 2-layer nn.LSTM d=128, linear head (the LSTM baseline of the paper's tables; its fused CPU
  kernels are cheaper per token than the LRNN layers of this library on CPU); timed once per batch shape.

Sampling includes the rejection of test-set sequences; the one-off cost of hashing the paper test set, at the first
batch that can overlap it, is reported separately. Then the time to build each test set ("small" always, "paper" with
--paper-test-sets). The load average is printed: timings on a shared machine are noisy.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from statetrack.tasks import get_task, list_tasks
from statetrack.train import autocast_factory, make_step, masked_cross_entropy

from .harness import Report, load_average, parser


class Floor(torch.nn.Module):
    """Embedding + head: the cheapest possible step on a batch (no token mixing)."""

    def __init__(self, vocab: int, d: int = 128):
        super().__init__()
        self.emb, self.head = torch.nn.Embedding(vocab, d), torch.nn.Linear(d, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, T] ids -> logits [B, T, V]."""
        return self.head(self.emb(x))


class Lstm(torch.nn.Module):
    """Embedding, 2-layer LSTM, head."""

    def __init__(self, vocab: int, d: int = 128):
        super().__init__()
        self.emb, self.head = torch.nn.Embedding(vocab, d), torch.nn.Linear(d, vocab)
        self.rnn = torch.nn.LSTM(d, d, num_layers=2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, T] ids -> logits [B, T, V]."""
        return self.head(self.rnn(self.emb(x))[0])


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def step_time(model_cls, task, batch, repeats: int) -> float:
    """Median seconds of the trainer's eager step (statetrack.train.make_step: fp32, no clipping) on ``batch``."""
    torch.manual_seed(0)
    model = model_cls(task.vocab_size)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    step = make_step(model, model, opt, masked_cross_entropy, 0.0, autocast_factory("cpu", False, False))
    x, y, m = batch.input, batch.target, batch.mask
    step(x, y, m)  # warm-up
    return median_time(lambda: step(x, y, m), repeats)


def longest_train_length(task) -> int:
    """The longest valid training length (some tasks take odd lengths only)."""
    hi = task.train_lengths[1]
    for L in (hi, hi - 1):
        try:
            task.sample(1, generator=0, lengths=L, exclude_test=False)
            return L
        except ValueError:
            continue
    raise ValueError(f"{task.name}: no valid length at {hi} or {hi - 1}")


def build_parser():
    ap = parser(__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--paper-test-sets", action="store_true", help="also time the paper-size test sets")
    ap.add_argument("--no-test-sets", action="store_true", help="do not time building the test sets")
    ap.add_argument("--tasks", default=None, help="comma-separated task names (default: every registered task)")
    ap.add_argument("--batch-size", type=int, default=None, help="instead of 1024 (Chomsky) / 512 (groups)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    names = args.tasks.split(",") if args.tasks else list_tasks()
    rep = Report("tasks_throughput", "Task data generation vs one CPU training step on the same batch", args.out,
                 print_only=args.print_only, device="cpu", suffix=".txt", argv=argv)  # fmt: skip
    rep.header(f"numpy {np.__version__}; load average at start (1, 5, 15 min): {load_average()}")
    emit = rep.say
    emit(f"{'task':<24}{'batch':>6}{'lengths':>9}{'sample ms':>11}{'floor ms':>10}{'lstm ms':>9}{'sample/lstm':>13}")
    emit("-" * 82)
    one_off = []
    lstm_cache: dict[tuple[int, ...], float] = {}
    for name in names:
        task = get_task(name)
        if task.kind == "chomsky":
            lo, hi = task.train_lengths
            bs = args.batch_size or 1024
            cases = [(bs, (lo, hi)), (bs, longest_train_length(task))]
        else:
            cases = [(args.batch_size or 512, 64)]
        for batch_size, lengths in cases:
            spec = str(lengths) if isinstance(lengths, int) else f"{lengths[0]}-{lengths[1]}"
            g = torch.Generator().manual_seed(0)
            t0 = time.perf_counter()
            batch = task.sample(batch_size, generator=g, lengths=lengths)  # first call: may hash the test set
            first = time.perf_counter() - t0
            t_sample = median_time(lambda: task.sample(batch_size, generator=g, lengths=lengths), args.repeats)  # noqa: B023
            if first > 5 * t_sample + 0.05:
                one_off.append((name, first - t_sample))
            t_floor = step_time(Floor, task, batch, args.repeats)
            if tuple(batch.input.shape) not in lstm_cache:  # the step cost depends on the shape, hardly on the task
                lstm_cache[tuple(batch.input.shape)] = step_time(Lstm, task, batch, args.repeats)
            t_lstm = lstm_cache[tuple(batch.input.shape)]
            emit(
                f"{name:<24}{batch_size:>6}{spec:>9}{1e3 * t_sample:>11.2f}{1e3 * t_floor:>10.1f}{1e3 * t_lstm:>9.1f}"
                f"{t_sample / t_lstm:>13.4f}"
            )
    emit()
    emit("one-off: hashing the paper test set at the first batch that can overlap it (train and test lengths meet)")
    for name, t in one_off:
        emit(f"  {name:<24}{t:>8.2f} s")
    if args.no_test_sets:
        return 0
    emit()
    emit(f"{'test set':<24}{'size':>8}{'shape':>16}{'build s':>10}")
    emit("-" * 58)
    for name in names:
        task = get_task(name)
        for size in ("small", "paper") if args.paper_test_sets else ("small",):
            t0 = time.perf_counter()
            ts = task.test_set(size)
            dt = time.perf_counter() - t0
            emit(f"{name:<24}{size:>8}{str(tuple(ts.input.shape)):>16}{dt:>10.2f}")
            del ts
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
