"""``PackedLoader``: documents packed into [B, T] rows, sharded over ranks, endless, deterministic, resumable.

The rules (B = batch_size rows per rank, T = seq_len, W = world_size, N documents of the split):

- **Epoch e** (0, 1, ...) draws from ``numpy.random.default_rng([seed, e])`` a permutation of the N documents
  and lays them end to end in that order: one stream of all the split's tokens. With ``shuffle=False`` the
  documents keep their stored order and nothing below is shuffled (evaluation).
- **Rows**: the stream is cut into consecutive rows of T tokens; the last partial row (< T tokens) is dropped for
  that epoch. A document that does not fit in the rest of a row is **split**: its remainder opens the next row
  of the stream. ``position_ids`` count from 0 at each document start *and at the start of every row*, so a
  continued document restarts at 0 too: the model never carries state from one row into the next
  (StateTrackForCausalLM starts a new segment wherever position_ids is 0, and the loss does not cross it).
- **Batches**: the same generator then permutes the epoch's R rows; global batch g is rows [g B W, (g + 1) B W)
  of that order; the last R mod (B W) rows are dropped, so every rank makes the same number of steps
  (``batches_per_epoch``) and no row is seen twice in an epoch.
- **Ranks**: rank r takes rows [g B W + r B, g B W + (r + 1) B) of global batch g: the ranks' parts are disjoint,
  and together (rank 0's rows, then rank 1's, ...) they are exactly what one rank with batch size B W gets.
- **After the last batch** of epoch e comes batch 0 of epoch e + 1: endless.
- **Resume**: the position is (epoch, batch), the same on every rank. ``state_dict()`` after k batches
  points at batch k; a loader given it by ``load_state_dict`` yields exactly the batches the uninterrupted one
  would next, on any rank, and also with another B and W whose B W is the same (the global batch is the same).
  With another B W the position moves in rows: p = batch x B W rows into the epoch's order (which B W does not
  change), a multiple of the new B W (as it is when a training step's B W x grad_accum stays the same); the
  next rows are then the same rows, up to the epoch's dropped tail (R mod B W differs); a p past the new last
  batch starts the next epoch.

Each batch: ``input_ids``, ``labels`` (a copy of input_ids; the model shifts it) and ``position_ids``, all
int64 [B, T] CPU tensors.
"""

from __future__ import annotations

import numpy as np
import torch

from statetrack.lm.data_shards import TokenShards

STATE_VERSION = 1


class PackedLoader:
    """Endless iterator of packed batches from ``shards`` (rules: module docstring).

    Shapes: ``next(loader)`` -> {"input_ids", "labels", "position_ids"}: int64 [batch_size, seq_len]."""

    def __init__(
        self,
        shards: TokenShards,
        batch_size: int,
        seq_len: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ):
        if not isinstance(shards, TokenShards):
            raise TypeError(f"shards must be a TokenShards (statetrack.lm.data.TokenShards(dir)), got {type(shards)}")
        for name, v, low in (("batch_size", batch_size, 1), ("seq_len", seq_len, 1), ("world_size", world_size, 1)):
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be an integer in [0, world_size={world_size}), got {rank!r}")
        if not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.shards, self.batch_size, self.seq_len = shards, batch_size, seq_len
        self.rank, self.world_size, self.seed, self.shuffle = rank, world_size, seed, bool(shuffle)
        self.rows_per_epoch = len(shards) // seq_len
        self.global_rows = batch_size * world_size
        self.batches_per_epoch = self.rows_per_epoch // self.global_rows
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"split {shards.split!r} of {str(shards.dir)!r} has {len(shards)} tokens: fewer than one "
                f"global batch of batch_size x world_size = {self.global_rows} rows x seq_len={seq_len}"
            )
        self.epoch, self.batch = 0, 0
        self._plan_epoch = None

    # --- iteration ---

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        order, starts, rows = self._plan(self.epoch)
        first = self.batch * self.global_rows + self.rank * self.batch_size
        ids = np.empty((self.batch_size, self.seq_len), dtype=np.int64)
        pos = np.empty((self.batch_size, self.seq_len), dtype=np.int64)
        for b in range(self.batch_size):
            self._fill_row(int(rows[first + b]), order, starts, ids[b], pos[b])
        self.batch += 1
        if self.batch == self.batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        input_ids = torch.from_numpy(ids)
        return {"input_ids": input_ids, "labels": input_ids.clone(), "position_ids": torch.from_numpy(pos)}

    @property
    def tokens_per_batch(self) -> int:
        """Tokens in one batch of this rank: batch_size x seq_len."""
        return self.batch_size * self.seq_len

    # --- resume ---

    def state_dict(self) -> dict:
        """The position (next batch) and what it is relative to; the same on every rank."""
        return {
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "batch": self.batch,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "seq_len": self.seq_len,
            "global_rows": self.global_rows,
            "split": self.shards.split,
            "content_hash": self.shards.content_hash,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state`` (a ``state_dict()``), also with another B x W that divides its position in rows
        (module docstring); ValueError naming the key that does not match this loader (another dataset, split,
        seed, shuffle or seq_len would not continue the same sequence)."""
        mine = self.state_dict()
        same = ("version", "content_hash", "split", "seed", "shuffle", "seq_len", "global_rows")
        for key in (*same, "epoch", "batch"):
            if key not in state:
                raise ValueError(f"loader state: no {key!r} (not a PackedLoader.state_dict())")
        epoch, batch, rows = state["epoch"], state["batch"], state["global_rows"]
        if (
            not all(isinstance(v, int) and v >= 0 for v in (epoch, batch, rows))
            or rows == 0
            or (rows == self.global_rows and batch >= self.batches_per_epoch)
        ):
            raise ValueError(f"loader state: epoch {epoch!r} / batch {batch!r} of {rows!r} rows out of range "
                             f"(batches_per_epoch={self.batches_per_epoch})")  # fmt: skip
        for key in same:
            if key == "global_rows" and batch * rows % self.global_rows == 0:  # the same position in rows
                continue
            if state[key] != mine[key]:
                raise ValueError(
                    f"loader state: {key} is {state[key]!r} there but {mine[key]!r} here; it resumes only the "
                    "same data, split, seed, shuffle and seq_len, with a batch_size x world_size that divides "
                    f"its position in rows (batch {batch} x {rows})"
                )
        batch = batch * rows // self.global_rows
        if batch >= self.batches_per_epoch:  # only this B x W's dropped tail was left of the epoch
            epoch, batch = epoch + 1, 0
        self.epoch, self.batch = epoch, batch

    # --- packing ---

    def _plan(self, epoch: int):
        """(document order [N], where each starts in the stream [N + 1], row order [R]) of ``epoch``, cached."""
        if self._plan_epoch is not None and self._plan_epoch[0] == epoch:
            return self._plan_epoch[1]
        n = self.shards.documents
        if self.shuffle:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(n)
            rows = rng.permutation(self.rows_per_epoch)
        else:
            order, rows = np.arange(n), np.arange(self.rows_per_epoch)
        starts = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(self.shards.doc_lengths[order], out=starts[1:])
        plan = (order, starts, rows)
        self._plan_epoch = (epoch, plan)
        return plan

    def _fill_row(self, row: int, order, starts, ids: np.ndarray, pos: np.ndarray) -> None:
        T = self.seq_len
        lo, hi = row * T, (row + 1) * T
        k = int(np.searchsorted(starts, lo, side="right")) - 1  # the document the row starts in
        t = lo
        while t < hi:
            doc_lo, doc_hi = int(starts[k]), int(starts[k + 1])
            a, b = t - doc_lo, min(doc_hi, hi) - doc_lo  # this document's tokens [a, b) fall in the row
            ids[t - lo : t - lo + b - a] = self.shards.document(int(order[k]))[a:b]
            pos[t - lo : t - lo + b - a] = np.arange(b - a)  # 0 at a document start and at the row start
            t += b - a
            k += 1
