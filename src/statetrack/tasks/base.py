"""The task interface: on-the-fly training batches and fixed, versioned test sets disjoint from them.

Glossary of shape letters: B batch (sequences), T input positions of the longest sequence in the batch.

A task is fully described by (family, params, seed). All randomness comes from :class:`StableRng` (raw
Philox words, see ``_random.py``), so the same (params, seed) gives the same tokens on every machine.

Test sets: sequences are generated from a stream named by (``TEST_SET_VERSION``, family, generation params,
test lengths), in chunks, and deduplicated in order; the "small" set is a prefix of the "paper" set. Training
batches reject every sequence that is in the paper test set (checked by a 64-bit hash, only for rows whose
length can occur in the test set, so the check costs nothing when train and test lengths do not overlap).
"""

from __future__ import annotations

import abc
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ._random import RowRng, StableRng, permutation, sequence_hashes, text_key64

# Bump when generation changes in a way that changes any test set (the golden hashes in tests/tasks pin it);
# it is part of every run's cache key (reproduce.cache). A family whose generator changed also bumps its own
# ``Task.generator_version``, which names its test stream, so the test sets of unchanged families stay as they
# were. 2: bracket expressions as long as the original generator's (max(L, 5) - 3 tokens), mod. arith. test
# lengths 39-255 as the original's, "4 tokens per transition" labels every filler with the state (the paper).
TEST_SET_VERSION = 2
_TEST_CHUNK = 1024
_MAX_REJECTION_ROUNDS = 64

# parameters every task family has; the rest are the family's generation parameters
PROTOCOL_PARAMS = ("train_lengths", "test_lengths", "test_size", "test_size_small", "train_set_size")
# every family takes these (its ``defaults`` may leave them out)
_COMMON_DEFAULTS: dict[str, Any] = {"train_set_size": 0}

# (test stream name, paper size) -> sorted uint64 hashes of the paper test set; a few KB to 320 KB each
_TEST_HASHES: dict[tuple[str, int], np.ndarray] = {}
_TEST_HASHES_LOCK = threading.Lock()
_EPOCH_ORDERS_LOCK = threading.Lock()


@dataclass(frozen=True)
class Batch:
    """A padded batch, exactly what a model sees.

    Attributes:
        input: LongTensor [B, T], token ids; ``input[b, lengths[b]:]`` is ``pad_id``.
        target: LongTensor [B, T], label ids in the id space of ``input``; ``pad_id`` where ``mask`` is False.
        mask: BoolTensor [B, T], True where a label counts (loss and accuracy); False on padding.
        lengths: LongTensor [B], number of real input positions of each row (``<bos>`` included).
    """

    input: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor

    def __len__(self) -> int:
        return self.input.shape[0]

    def __getitem__(self, rows) -> Batch:
        """Some rows (an index, slice, index tensor or boolean mask), trimmed to their longest row."""
        if isinstance(rows, int):
            rows = slice(rows, rows + 1 if rows != -1 else None)
        return Batch(self.input[rows], self.target[rows], self.mask[rows], self.lengths[rows]).trim()

    def trim(self) -> Batch:
        """Drop trailing columns that are padding in every row."""
        T = int(self.lengths.max()) if len(self) else 0
        if T == self.input.shape[1]:
            return self
        return Batch(self.input[:, :T], self.target[:, :T], self.mask[:, :T], self.lengths)

    def split(self, batch_size: int) -> Iterator[Batch]:
        """Consecutive sub-batches of at most ``batch_size`` rows, each trimmed (to evaluate a test set)."""
        for start in range(0, len(self), batch_size):
            yield self[start : start + batch_size]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(t.to(device) for t in (self.input, self.target, self.mask, self.lengths)))


def _as_length_pair(name: str, value) -> tuple[int, int]:
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        value = (int(value), int(value))
    try:
        lo, hi = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair (lo, hi) of ints, got {value!r}") from None
    if lo > hi:
        raise ValueError(f"{name} must have lo <= hi, got ({lo}, {hi})")
    return lo, hi


class Task(abc.ABC):
    """One state-tracking task. Subclasses define the vocabulary and ``_generate``.

    Public attributes: ``name``, ``params`` (dict, JSON-able), ``kind`` ("chomsky": one answer position,
    answer-only loss; "group": a label at every position), ``vocab`` ({id: meaning}), ``vocab_size``
    (embedding and output-head size), ``pad_id``, ``bos_id`` (None without ``<bos>``), ``chance``,
    ``train_lengths`` and ``test_lengths`` ((lo, hi), in the family's ``length_unit``).
    """

    family: ClassVar[str]
    kind: ClassVar[str]
    length_unit: ClassVar[str]
    summary: ClassVar[str]
    defaults: ClassVar[dict[str, Any]]
    # bump (and TEST_SET_VERSION with it) when this family draws different sequences from the same stream
    generator_version: ClassVar[int] = 1

    def __init__(self, name: str | None = None, *, theory: str = "", source: str = "", **params):
        defaults = {**_COMMON_DEFAULTS, **self.defaults}
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {unknown} for task {name or self.family!r} (family {self.family!r}); "
                f"valid parameters: {sorted(defaults)}"
            )
        p = {**defaults, **params}
        n = p["train_set_size"]
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"train_set_size must be an int >= 0 (0 = fresh samples every batch), got {n!r}")
        p["train_set_size"] = int(n)
        p["bos"] = bool(p["bos"])
        p["train_lengths"] = _as_length_pair("train_lengths", p["train_lengths"])
        p["test_lengths"] = _as_length_pair("test_lengths", p["test_lengths"])
        for key in ("test_size", "test_size_small"):
            if int(p[key]) < 1:
                raise ValueError(f"{key} must be >= 1, got {p[key]}")
            p[key] = int(p[key])
        self.params = self._check_params(p)
        self.name = name or self.family
        self.theory = theory
        self.source = source
        self._symbols = self._build_symbols()
        self._vocab = [*self._symbols, "<bos>", "<pad>"]
        for key in ("train_lengths", "test_lengths"):
            lo, hi = self.params[key]
            self._valid_lengths(lo, hi, what=key)

    # ----------------------------------------------------------------------------------- subclass hooks

    @abc.abstractmethod
    def _check_params(self, p: dict[str, Any]) -> dict[str, Any]:
        """Validate and normalize the family's own parameters; return the dict."""

    @abc.abstractmethod
    def _build_symbols(self) -> list[str]:
        """Meanings of the task's own tokens, ids 0.. in order (``<bos>`` and ``<pad>`` follow)."""

    @abc.abstractmethod
    def _generate(self, rng: StableRng, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw one sequence per length. lengths: int64 [B] (valid task lengths).

        Returns (input, target, mask) numpy arrays [B, T] with T = max positions, padded with ``pad_id``.
        """

    @abc.abstractmethod
    def positions(self, length: int) -> int:
        """Number of input positions (``<bos>`` included) of a sequence of task length ``length``."""

    @property
    @abc.abstractmethod
    def min_length(self) -> int:
        """Smallest valid task length."""

    def _length_ok(self, lengths: np.ndarray) -> np.ndarray:
        """Which lengths (>= min_length) are valid; override for families with gaps (odd lengths only)."""
        return np.ones(lengths.shape, dtype=bool)

    @property
    def _length_rule(self) -> str:
        """Why a length can be invalid (for error messages)."""
        return ""

    @property
    @abc.abstractmethod
    def chance(self) -> float:
        """Accuracy of a uniform guess over the answers (the paper's acc_rand)."""

    @property
    @abc.abstractmethod
    def label_ids(self) -> list[int]:
        """Ids that can appear as labels (where mask is True)."""

    @property
    @abc.abstractmethod
    def input_ids(self) -> list[int]:
        """Ids that can appear in inputs, ``<bos>`` and ``<pad>`` excluded."""

    def _generation_key(self) -> dict[str, Any]:
        """Parameters that change the problems drawn (the test-set identity); ``bos`` only changes framing."""
        return {k: v for k, v in self.params.items() if k not in PROTOCOL_PARAMS and k != "bos"}

    def _describe_extra(self) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------------------------------------- basics

    @property
    def vocab(self) -> dict[int, str]:
        return dict(enumerate(self._vocab))

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    @property
    def bos_id(self) -> int | None:
        return len(self._symbols) if self.params["bos"] else None

    @property
    def pad_id(self) -> int:
        return len(self._symbols) + 1

    @property
    def train_lengths(self) -> tuple[int, int]:
        return self.params["train_lengths"]

    @property
    def test_lengths(self) -> tuple[int, int]:
        return self.params["test_lengths"]

    def decode(self, ids) -> list[str]:
        """Meanings of a sequence of ids."""
        return [self._vocab[int(i)] for i in ids]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, params={self.params!r})"

    def _valid_lengths(self, lo: int, hi: int, what: str = "lengths") -> np.ndarray:
        if lo < self.min_length:
            raise ValueError(
                f"{what}: length {lo} is below the minimum {self.min_length} for task {self.name!r} "
                f"(lengths count {self.length_unit})"
            )
        cand = np.arange(lo, hi + 1, dtype=np.int64)
        ok = cand[self._length_ok(cand)]
        if ok.size == 0:
            raise ValueError(f"{what}: no valid length in [{lo}, {hi}] for task {self.name!r}: {self._length_rule}")
        return ok

    def _draw_lengths(self, batch_size: int, lengths, rng: StableRng) -> np.ndarray:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if lengths is None:
            lengths = self.train_lengths
        if isinstance(lengths, int | np.integer) and not isinstance(lengths, bool):
            self._valid_lengths(int(lengths), int(lengths), what="lengths")
            return np.full(batch_size, int(lengths), dtype=np.int64)
        if isinstance(lengths, tuple):
            lo, hi = _as_length_pair("lengths", lengths)
            ok = self._valid_lengths(lo, hi, what="lengths")
            return ok[rng.integers(ok.size, (batch_size,))]
        arr = np.asarray(lengths.cpu() if isinstance(lengths, torch.Tensor) else lengths, dtype=np.int64)
        if arr.shape != (batch_size,):
            raise ValueError(
                "lengths must be None (train range), an int, a tuple (lo, hi), or a list/array/tensor of "
                f"batch_size = {batch_size} ints; got shape {arr.shape}"
            )
        for L in np.unique(arr):
            self._valid_lengths(int(L), int(L), what="lengths")
        return arr

    # ------------------------------------------------------------------------------------------ sampling

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | int | None = None,
        lengths=None,
        *,
        exclude_test: bool = True,
    ) -> Batch:
        """A fresh training batch.

        Args:
            batch_size: B.
            generator: a CPU ``torch.Generator`` (advanced by the call, so repeated calls give fresh data),
                an int seed, or None for torch's global generator.
            lengths: None (uniform over the valid lengths of ``train_lengths``), an int, a tuple (lo, hi)
                (uniform over the valid lengths in it, per sequence), or a list/array/tensor of B lengths.
            exclude_test: reject and redraw sequences that are in this task's paper test set.
        Returns:
            :class:`Batch` with input/target/mask [B, T], lengths [B]; T = positions of the longest row.

        With ``train_set_size`` N > 0 (the paper's fixed training set for the group tasks: 1.6M sequences) and
        ``lengths`` None, the B rows are drawn uniformly, with replacement, from that fixed set (see
        :meth:`train_rows`; :meth:`epoch_batch` gives exact epochs instead); explicit ``lengths`` always draw
        fresh sequences (evaluation samples).
        """
        rng = StableRng.from_torch(generator)
        if self.params["train_set_size"] and lengths is None:
            return self.train_rows(rng.integers(self.params["train_set_size"], (batch_size,)))
        L = self._draw_lengths(batch_size, lengths, rng)
        inp, tgt, msk = self._generate(rng, L)
        if exclude_test:
            self._reject_test_members(rng, L, inp, tgt, msk)
        return self._to_batch(inp, tgt, msk, L)

    def _to_batch(self, inp, tgt, msk, L) -> Batch:
        pos = np.array([self.positions(int(v)) for v in np.unique(L)])
        to_pos = dict(zip(np.unique(L).tolist(), pos.tolist(), strict=True))
        T = np.array([to_pos[int(v)] for v in L], dtype=np.int64)
        return Batch(
            torch.from_numpy(np.ascontiguousarray(inp, dtype=np.int64)),
            torch.from_numpy(np.ascontiguousarray(tgt, dtype=np.int64)),
            torch.from_numpy(np.ascontiguousarray(msk, dtype=bool)),
            torch.from_numpy(T),
        )

    def _reject_test_members(self, rng, L, inp, tgt, msk) -> None:
        lo, hi = self.test_lengths
        rows = np.nonzero((L >= lo) & (L <= hi))[0]
        if rows.size == 0:
            return
        test_hashes = self._test_hashes()
        for _ in range(_MAX_REJECTION_ROUNDS):
            hit = rows[np.isin(sequence_hashes(inp[rows], self._row_positions(L[rows])), test_hashes)]
            if hit.size == 0:
                return
            i2, t2, m2 = self._generate(rng, L[hit])
            w = i2.shape[1]
            inp[hit, :w], tgt[hit, :w], msk[hit, :w] = i2, t2, m2
            rows = hit
        raise RuntimeError(
            f"task {self.name!r}: could not draw training sequences outside the test set at lengths "
            f"{sorted(set(L[rows].tolist()))} after {_MAX_REJECTION_ROUNDS} rounds; the test set covers "
            "(nearly) all sequences of these lengths. Train on other lengths or pass exclude_test=False."
        )

    # ------------------------------------------------------------------------------ fixed training set

    def _train_set_key(self) -> int:
        key = json.dumps({"gen": self._generation_key(), "train_lengths": list(self.train_lengths),
                          "bos": self.params["bos"]}, sort_keys=True)  # fmt: skip
        return text_key64(f"statetrack-train-set|gen{self.generator_version}|{self.family}|{key}")

    def train_rows(self, indices) -> Batch:
        """Rows ``indices`` of the fixed training set (``train_set_size`` sequences, lengths ``train_lengths``).

        Sequence i is generated on demand from a stream named by (family, generation params, train lengths, i)
        alone, so it is the same in every batch, process and machine, and the set is never held in memory.
        Sequences of the paper test set are replaced (by sequence i's next attempt), as in :meth:`sample`.
        """
        n = self.params["train_set_size"]
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if n < 1:
            raise ValueError(f"task {self.name!r} has no fixed training set (train_set_size = 0)")
        if idx.size == 0 or idx.min() < 0 or idx.max() >= n:
            raise ValueError(f"indices must be a non-empty list of ints in [0, {n}), got {indices!r}")
        key = self._train_set_key()
        ok = self._valid_lengths(*self.train_lengths, what="train_lengths")
        L = ok[RowRng(key ^ 0x1E47, idx).integers(ok.size, (idx.size,))]
        width = self.positions(int(L.max()))
        inp = np.full((idx.size, width), self.pad_id, dtype=np.int64)
        tgt, msk = inp.copy(), np.zeros((idx.size, width), dtype=bool)
        lo, hi = self.test_lengths
        for length in np.unique(L):  # one draw per length: shapes, hence each row's stream, fixed by its length
            rows = np.nonzero(L == length)[0]
            todo, attempt = rows, 0
            while todo.size:
                if attempt >= _MAX_REJECTION_ROUNDS:
                    raise RuntimeError(f"task {self.name!r}: fixed training sequences at length {length} keep "
                                       "falling in the test set; train on other lengths")  # fmt: skip
                i2, t2, m2 = self._generate(RowRng(key, idx[todo], attempt), np.full(todo.size, length))
                w = i2.shape[1]
                inp[todo, :w], tgt[todo, :w], msk[todo, :w] = i2, t2, m2
                if not lo <= length <= hi:
                    break
                hit = np.isin(sequence_hashes(i2, self._row_positions(np.full(todo.size, length))),
                              self._test_hashes())  # fmt: skip
                todo, attempt = todo[hit], attempt + 1
        return self._to_batch(inp, tgt, msk, L).trim()

    def epoch_batch(self, seed: int, step: int, batch_size: int) -> Batch:
        """Batch ``step`` of exact epochs over the fixed training set: epoch e visits every sequence once, in
        an order named by (seed, e); batches run on across epoch ends. A function of (seed, step) alone."""
        n = self.params["train_set_size"]
        if n < 1:
            raise ValueError(f"task {self.name!r} has no fixed training set (train_set_size = 0)")
        pos = np.arange(step * batch_size, (step + 1) * batch_size, dtype=np.int64)
        idx = np.empty_like(pos)
        for e in np.unique(pos // n):
            sel = pos // n == e
            idx[sel] = self._epoch_order(int(seed), int(e))[pos[sel] % n]
        return self.train_rows(idx)

    def _epoch_order(self, seed: int, epoch: int) -> np.ndarray:
        # the trainer's prefetch threads call this at once: one at a time, so none drops an order another reads
        with _EPOCH_ORDERS_LOCK:
            cache = self.__dict__.setdefault("_epoch_orders", {})
            if (seed, epoch) not in cache:
                if len(cache) >= 2:  # the current epoch and the next (a batch straddling the end)
                    cache.pop(next(iter(cache)))
                key = text_key64(f"statetrack-epoch|{self._train_set_key()}|{seed}|{epoch}")
                cache[(seed, epoch)] = permutation(key, self.params["train_set_size"])
            return cache[(seed, epoch)]

    def _row_positions(self, L: np.ndarray) -> np.ndarray:
        return np.array([self.positions(int(v)) for v in L], dtype=np.int64)

    # ----------------------------------------------------------------------------------------- test sets

    def test_set_size(self, size: str | int = "paper") -> int:
        if size == "paper":
            return self.params["test_size"]
        if size == "small":
            return min(self.params["test_size_small"], self.params["test_size"])
        if isinstance(size, int | np.integer) and not isinstance(size, bool) and size >= 1:
            return int(size)
        raise ValueError(f"size must be 'paper', 'small' or a positive int, got {size!r}")

    def _test_stream_name(self) -> str:
        key = json.dumps({"gen": self._generation_key(), "test_lengths": list(self.test_lengths)}, sort_keys=True)
        # v1 streams keep their old name: test sets of families whose generator never changed stay the same
        gen = "" if self.generator_version == 1 else f"|gen{self.generator_version}"
        return f"statetrack-test-set|v1{gen}|{self.family}|{key}"

    def _build_test(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The first n distinct sequences of the test stream: (input, target, mask, lengths, hashes)."""
        lo, hi = self.test_lengths
        width = self.positions(hi)
        inp = np.full((n, width), self.pad_id, dtype=np.int64)
        tgt = np.full((n, width), self.pad_id, dtype=np.int64)
        msk = np.zeros((n, width), dtype=bool)
        lengths = np.zeros(n, dtype=np.int64)
        hashes = np.zeros(n, dtype=np.uint64)
        seen: set[int] = set()
        filled, chunk = 0, 0
        max_chunks = 16 * (n // _TEST_CHUNK + 1)
        while filled < n:
            if chunk >= max_chunks:
                raise ValueError(
                    f"task {self.name!r}: only {filled} distinct sequences found at test lengths "
                    f"{self.test_lengths} after {chunk * _TEST_CHUNK} draws; ask for fewer than {n}"
                )
            rng = StableRng.from_text(f"{self._test_stream_name()}|chunk{chunk}")
            chunk += 1
            L = self._draw_lengths(_TEST_CHUNK, (lo, hi), rng)
            ci, ct, cm = self._generate(rng, L)
            h = sequence_hashes(ci, self._row_positions(L))
            keep = []
            for r, hv in enumerate(h.tolist()):
                if hv not in seen:
                    seen.add(hv)
                    keep.append(r)
                    if filled + len(keep) == n:
                        break
            k = np.array(keep, dtype=np.int64)
            w = ci.shape[1]
            sl = slice(filled, filled + k.size)
            inp[sl, :w], tgt[sl, :w], msk[sl, :w] = ci[k], ct[k], cm[k]
            lengths[sl], hashes[sl] = L[k], h[k]
            filled += k.size
        return inp, tgt, msk, lengths, hashes

    def test_set(self, size: str | int = "paper") -> Batch:
        """The fixed test set: "paper" (the anchor's size), "small" (its first ``test_size_small`` sequences,
        for CPU runs) or an int n (the first n of the same stream).

        Deterministic on every machine; no sequence repeats; training batches from :meth:`sample` never
        contain a sequence of the paper set (nor, hence, of "small"). Returns a :class:`Batch` [n, T].
        """
        inp, tgt, msk, L, _ = self._build_test(self.test_set_size(size))
        return self._to_batch(inp, tgt, msk, L).trim()

    def constant_baseline(self, size: str | int = "paper") -> dict[str, Any]:
        """The best single answer on the test set ``size`` (:func:`statetrack.tasks.metrics.constant_answer_baseline`):
        {"answer", "answer_text", "accuracy", "scaled_accuracy", "size"}; the floor a model must clear."""
        from .metrics import constant_answer_baseline

        b = self.test_set(size)
        out = constant_answer_baseline(b.target, b.mask, self.chance)
        return {**out, "answer_text": self.vocab[out["answer"]], "size": len(b)}

    def test_set_info(self, size: str | int = "paper") -> dict[str, Any]:
        """Identity of a test set: version, stream name, size, lengths and a sha256 of its tensors."""
        b = self.test_set(size)
        digest = hashlib.sha256()
        for t in (b.input, b.target, b.mask.to(torch.uint8), b.lengths):
            digest.update(np.ascontiguousarray(t.numpy()).tobytes())
            digest.update(str(tuple(t.shape)).encode())
        return {
            "task": self.name,
            "version": TEST_SET_VERSION,
            "generator_version": self.generator_version,
            "stream": self._test_stream_name(),
            "size": len(b),
            "test_lengths": list(self.test_lengths),
            "shape": list(b.input.shape),
            "sha256": digest.hexdigest(),
        }

    def _test_hashes(self) -> np.ndarray:
        """Sorted hashes of the paper test set, shared by all instances of the same task (built once)."""
        key = (self._test_stream_name(), self.test_set_size("paper"))
        with _TEST_HASHES_LOCK:  # trainers sample from several threads; build once
            if key not in _TEST_HASHES:
                *_, hashes = self._build_test(key[1])
                if len(_TEST_HASHES) >= 64:
                    _TEST_HASHES.pop(next(iter(_TEST_HASHES)))
                _TEST_HASHES[key] = np.sort(hashes)
            return _TEST_HASHES[key]

    # ------------------------------------------------------------------------------------------ describe

    def describe(self) -> dict[str, Any]:
        """Everything about the task as JSON-able data (what ``statetrack tasks describe --json`` prints)."""
        out = {
            "name": self.name,
            "family": self.family,
            "kind": self.kind,
            "summary": self.summary,
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in self.params.items()},
            "vocab": {str(i): m for i, m in self.vocab.items()},
            "vocab_size": self.vocab_size,
            "pad_id": self.pad_id,
            "bos_id": self.bos_id,
            "alphabet_size": len(self.input_ids),
            "input_ids": self.input_ids,
            "label_ids": self.label_ids,
            "chance": self.chance,
            "train_lengths": list(self.train_lengths),
            "test_lengths": list(self.test_lengths),
            "length_unit": self.length_unit,
            "min_length": self.min_length,
            "test_sets": {
                "version": TEST_SET_VERSION,
                "paper": self.test_set_size("paper"),
                "small": self.test_set_size("small"),
            },
            "theory": self.theory,
            "source": self.source,
        }
        out.update(self._describe_extra())
        return out
