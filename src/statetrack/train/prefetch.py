"""The batches of a run: batch ``s`` is a function of (seed, s) alone, drawn ahead by background threads."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import torch


def batch_generator(seed: int, step: int) -> torch.Generator:
    """The generator of step ``step``'s batch: a function of (seed, step) only."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % (2**63 - 1))


class Prefetcher:
    """The batch of each step, drawn by ``workers`` background threads ahead of time (0 = in the caller).

    Batches depend on (seed, step) only, so prefetching changes nothing but the time the trainer waits.

    Args:
        task: a task of statetrack.tasks (its ``sample``); batch_size: sequences per batch.
        lengths: the ``lengths`` argument of ``task.sample`` (None = the task's training lengths).
        end: the step after the last one that will be asked for (nothing is drawn beyond it).
    """

    def __init__(self, task, batch_size: int, seed: int, lengths, end: int, workers: int):
        self.task, self.batch_size, self.seed, self.lengths, self.end = task, batch_size, seed, lengths, end
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="sampler") if workers > 0 else None
        self.ahead = 2 * workers
        self.futures: dict[int, Future] = {}

    def _draw(self, step: int):
        if getattr(self.task, "params", {}).get("train_set_size", 0) > 0 and self.lengths is None:
            # a fixed training set (the paper's S5 protocol): exact epochs over it, a function of (seed, step)
            return self.task.epoch_batch(self.seed, step, self.batch_size)
        return self.task.sample(self.batch_size, generator=batch_generator(self.seed, step), lengths=self.lengths)

    def get(self, step: int):
        """The batch of step ``step`` (a task Batch)."""
        if self.pool is None:
            return self._draw(step)
        for s in range(step, min(step + self.ahead + 1, self.end)):
            if s not in self.futures:
                self.futures[s] = self.pool.submit(self._draw, s)
        return self.futures.pop(step).result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
