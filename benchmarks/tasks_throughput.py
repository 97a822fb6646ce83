"""Task data generation vs one CPU training step on the same batch (issue: state-tracking task suite).

    python benchmarks/tasks_throughput.py [--repeats 5] [--paper-test-sets] \
        [--out benchmarks/results/tasks_throughput_cpu.txt]

For every registered task: the median time to draw one training batch (Chomsky tasks: 1024 sequences at the train
lengths 3-40 and 1024 at the longest train length; group tasks: 512 sequences of 64 tokens), next to the median time of
one training step (forward, masked cross-entropy, backward, AdamW) on that batch for two reference models:

- floor: embedding d=128 + linear head, no token mixing at all; no real model's step can be cheaper;
- lstm: embedding d=128, 2-layer nn.LSTM d=128, linear head (the LSTM baseline of the paper's tables; its fused CPU
  kernels are cheaper per token than the LRNN layers of this library on CPU); timed once per batch shape.

Sampling includes the rejection of test-set sequences; the one-off cost of hashing the paper test set, at the first
batch that can overlap it, is reported separately. Then the time to build each test set ("small" always, "paper" with
--paper-test-sets). The load average is printed: timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from statetrack.tasks import get_task, list_tasks


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
    torch.manual_seed(0)
    model = model_cls(task.vocab_size)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step():
        logits = model(batch.input)
        loss = F.cross_entropy(logits[batch.mask], batch.target[batch.mask])
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    return median_time(step, repeats)


def environment() -> str:
    return (
        f"command: python {' '.join(sys.argv)}\n"
        f"device: CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch threads {torch.get_num_threads()}\n"
        f"versions: python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}\n"
        f"load average at start (1, 5, 15 min): {', '.join(f'{v:.1f}' for v in os.getloadavg())}\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--paper-test-sets", action="store_true", help="also time the paper-size test sets")
    ap.add_argument("--out", default=None, help="also write the report to this file")
    args = ap.parse_args()

    lines: list[str] = []

    def emit(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s + "\n")

    emit(environment())
    emit(f"{'task':<24}{'batch':>6}{'lengths':>9}{'sample ms':>11}{'floor ms':>10}{'lstm ms':>9}{'sample/lstm':>13}")
    emit("-" * 82)
    one_off = []
    lstm_cache: dict[tuple[int, ...], float] = {}
    for name in list_tasks():
        task = get_task(name)
        if task.kind == "chomsky":
            lo, hi = task.train_lengths
            longest = hi if task._length_ok(np.array([hi]))[0] else hi - 1
            cases = [(1024, (lo, hi)), (1024, longest)]
        else:
            cases = [(512, 64)]
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
    emit()
    emit(f"{'test set':<24}{'size':>8}{'shape':>16}{'build s':>10}")
    emit("-" * 58)
    for name in list_tasks():
        task = get_task(name)
        for size in ("small", "paper") if args.paper_test_sets else ("small",):
            t0 = time.perf_counter()
            ts = task.test_set(size)
            dt = time.perf_counter() - t0
            emit(f"{name:<24}{size:>8}{str(tuple(ts.input.shape)):>16}{dt:>10.2f}")
            del ts
    if args.out:
        with open(args.out, "w") as f:
            f.writelines(lines)


if __name__ == "__main__":
    main()
