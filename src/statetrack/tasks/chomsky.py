"""Chomsky-hierarchy tasks in the paper's format (xLSTM / Grazzi et al.): one answer, answer-only loss.

Format (every task here): ``input = <bos> s_1 ... s_{L-1}``, the problem string; the model must output the
answer at the last input position (after reading the whole problem, e.g. after ``=``). ``target`` is
``pad_id`` except at position L-1, which holds the answer token, and ``mask`` is True only there. The
length L counts input positions, ``<bos>`` included, which equals the paper's sequence length (problem +
answer token) for parity and modular arithmetic. Digits and bits have token id = their value, so "3" is id 3
in inputs and targets alike.

Glossary of shape letters: B batch, n problem tokens per row (L - 1 with ``<bos>``), N = max n.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ._random import StableRng
from .base import Task

_CHOMSKY_PROTOCOL = {
    "bos": True,
    "train_lengths": (3, 40),
    "test_lengths": (40, 256),
    "test_size": 8192,
    "test_size_small": 1024,
}


def _check_int(p: dict, key: str, lo: int, hi: int | None = None) -> None:
    v = p[key]
    if isinstance(v, bool) or not isinstance(v, int | np.integer):
        raise ValueError(f"{key} must be an int, got {v!r}")
    if v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{key} must be {rng}, got {v}")
    p[key] = int(v)


class ChomskyTask(Task):
    """Base of the one-answer tasks: subclasses draw the problem tokens and the answer."""

    kind = "chomsky"
    length_unit: ClassVar[str] = "input positions, <bos> included (= problem tokens + 1)"
    _min_problem: ClassVar[int] = 1

    @property
    def min_length(self) -> int:
        return self._min_problem + int(self.params["bos"])

    def positions(self, length: int) -> int:
        return int(self._positions(np.asarray([length], dtype=np.int64))[0])

    def _positions(self, lengths: np.ndarray) -> np.ndarray:
        """Input positions (``<bos>`` included) of each task length: the length itself, except where a
        family follows its original generator's length rule (brackets)."""
        return lengths

    def _problem_ok(self, n: np.ndarray) -> np.ndarray:
        return np.ones(n.shape, dtype=bool)

    def _length_ok(self, lengths: np.ndarray) -> np.ndarray:
        return self._problem_ok(lengths - int(self.params["bos"]))

    def _problem(self, rng: StableRng, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Problem tokens int64 [B, N] (entries at j >= n[b] are ignored) and answers int64 [B]."""
        raise NotImplementedError

    def _generate(self, rng, lengths):
        bos = int(self.params["bos"])
        lengths = self._positions(lengths)
        n = lengths - bos
        tok, ans = self._problem(rng, n)
        B, T = lengths.shape[0], int(lengths.max())
        inp = np.full((B, T), self.pad_id, dtype=np.int64)
        if bos:
            inp[:, 0] = self.bos_id
        cols = np.arange(T - bos)
        inp[:, bos:] = np.where(cols[None, :] < n[:, None], tok[:, : T - bos], self.pad_id)
        tgt = np.full((B, T), self.pad_id, dtype=np.int64)
        msk = np.zeros((B, T), dtype=bool)
        tgt[np.arange(B), lengths - 1] = ans
        msk[np.arange(B), lengths - 1] = True
        return inp, tgt, msk

    @property
    def input_ids(self) -> list[int]:
        return list(range(len(self._symbols)))


class _BitTask(ChomskyTask):
    """A task on bit strings with a one-bit answer (parity, even pairs)."""

    defaults: ClassVar[dict[str, Any]] = {**_CHOMSKY_PROTOCOL}

    def _check_params(self, p):
        return p

    def _build_symbols(self):
        return ["0", "1"]

    @property
    def chance(self):
        return 0.5

    @property
    def label_ids(self):
        return [0, 1]


class Parity(_BitTask):
    """Parity: bits in, answer = number of 1s mod 2."""

    family = "parity"
    summary = "bits; answer = (number of 1s) mod 2"

    def _problem(self, rng, n):
        bits = rng.integers(2, (n.shape[0], int(n.max())))
        valid = np.arange(bits.shape[1])[None, :] < n[:, None]
        return bits, (bits * valid).sum(axis=1) % 2


class EvenPairs(_BitTask):
    """Even pairs (star-free): answer = number of '01' and '10' substrings mod 2 (= first bit != last bit)."""

    family = "even-pairs"
    summary = "bits; answer = (number of 01 and 10 substrings) mod 2, i.e. 1 iff first bit != last bit"

    def _problem(self, rng, n):
        bits = rng.integers(2, (n.shape[0], int(n.max())))
        # a change between positions j and j+1 counts only if both lie inside the row
        inside = np.arange(1, bits.shape[1])[None, :] < n[:, None]
        changes = (bits[:, 1:] != bits[:, :-1]) & inside
        return bits, changes.sum(axis=1) % 2


class CycleNav(ChomskyTask):
    """Cycle navigation: start at 0 on a cycle of ``n_states``; moves left/stay/right; answer = end state."""

    family = "cycle-nav"
    summary = "moves left (-1) / stay (0) / right (+1) on a cycle, start 0; answer = final position"
    defaults: ClassVar[dict[str, Any]] = {**_CHOMSKY_PROTOCOL, "n_states": 5}

    def _check_params(self, p):
        _check_int(p, "n_states", 2, 10**6)
        return p

    def _build_symbols(self):
        return [str(i) for i in range(self.params["n_states"])] + ["left", "stay", "right"]

    def _problem(self, rng, n):
        m = self.params["n_states"]
        moves = rng.integers(3, (n.shape[0], int(n.max())))  # 0 left, 1 stay, 2 right
        valid = np.arange(moves.shape[1])[None, :] < n[:, None]
        return moves + m, ((moves - 1) * valid).sum(axis=1) % m

    @property
    def chance(self):
        return 1.0 / self.params["n_states"]

    @property
    def label_ids(self):
        return list(range(self.params["n_states"]))

    @property
    def input_ids(self):
        m = self.params["n_states"]
        return [m, m + 1, m + 2]


class _ModArithBase(ChomskyTask):
    _OPS: ClassVar[tuple[str, ...]] = ("+", "-", "*")

    def _check_params(self, p):
        _check_int(p, "m", 2, 10**6)
        p["mult"] = bool(p["mult"])
        return p

    @property
    def m(self) -> int:
        return self.params["m"]

    def sym(self, s: str) -> int:
        """Token id of a symbol ('+', '=', '(' ...)."""
        return self._symbols.index(s)

    @property
    def chance(self):
        return 1.0 / self.m

    @property
    def label_ids(self):
        return list(range(self.m))


class ModArith(_ModArithBase):
    """Modular arithmetic without brackets: ``d op d op ... d =``, ops uniform in {+, -, *} (or {+, -}),
    digits uniform in 0..m-1, ``*`` binding tighter than ``+``/``-``; answer = value mod m."""

    family = "modarith"
    summary = "d op d ... op d = ; op in {+,-,*}, * binds tighter; answer = value mod m"
    # test lengths 39-255: the original generator draws odd lengths 2k - 1 with k uniform in
    # ceil(40 / 2)..ceil(256 / 2), i.e. 39..255 (its training range 3-40 gives 3..39, as ours)
    defaults: ClassVar[dict[str, Any]] = {**_CHOMSKY_PROTOCOL, "m": 5, "mult": True, "test_lengths": (39, 255)}
    _min_problem = 2  # "d ="

    @property
    def _length_rule(self) -> str:
        parity = "odd" if self.params["bos"] else "even"
        return f"the problem 'd op ... d =' has an even number of tokens, so valid lengths are {parity}"

    def _build_symbols(self):
        return [str(i) for i in range(self.m)] + ["+", "-", "*", "="]

    def _problem_ok(self, n):
        return n % 2 == 0

    def _problem(self, rng, n):
        m, B, N = self.m, n.shape[0], int(n.max())
        k = (n - 2) // 2  # operators per row
        K = int(k.max())
        digits = rng.integers(m, (B, K + 1))
        ops = rng.integers(3 if self.params["mult"] else 2, (B, K))  # 0 '+', 1 '-', 2 '*'
        tok = np.empty((B, N), dtype=np.int64)
        tok[:, 0 : 2 * K + 1 : 2] = digits
        tok[:, 1 : 2 * K : 2] = ops + m
        tok[np.arange(B), n - 1] = self.sym("=")
        # left-to-right evaluation with precedence: value = acc + sign * term, where term is the current
        # product; one vectorized step per operator column
        acc = np.zeros(B, dtype=np.int64)
        sign = np.ones(B, dtype=np.int64)
        term = digits[:, 0].copy()
        for j in range(K):
            active = j < k
            mul = ops[:, j] == 2
            close = active & ~mul
            acc = np.where(close, (acc + sign * term) % m, acc)
            sign = np.where(close, np.where(ops[:, j] == 0, 1, -1), sign)
            term = np.where(active, np.where(mul, term * digits[:, j + 1] % m, digits[:, j + 1]), term)
        return tok, (acc + sign * term) % m


class ModArithBrackets(_ModArithBase):
    """Modular arithmetic with brackets (context-free), the Deletang et al. recursion: an expression of n
    tokens is ``d`` (n=1), ``-d`` (2), ``(d)`` (3), ``(-d)`` (4), else ``(A op B)`` with len(A) uniform in
    1..n-4 and len(B) = n-3-len(A); ops uniform in {+, -} or {+, -, *} (``mult``); answer = value mod m.

    Lengths follow the original generator (xLSTM's ``modular_arithmetic_with_brackets``): a sequence of length
    L is an expression of max(L, 5) - 3 tokens, then ``=``, the answer and one pad, so the model reads
    max(L, 5) - 2 problem tokens (+ ``<bos>``). Lengths 3-5 are thus one length, as there.
    """

    family = "modarith-brackets"
    summary = "bracketed expression with unary minus, then = ; answer = value mod m"
    defaults: ClassVar[dict[str, Any]] = {**_CHOMSKY_PROTOCOL, "m": 5, "mult": False}
    length_unit: ClassVar[str] = (
        "the original generator's sequence length L (expression of max(L, 5) - 3 tokens, '=', answer, pad); "
        "input positions = max(L, 5) - 2, + 1 for <bos>"
    )
    # 2: expressions of max(L, 5) - 3 tokens (version 1 had L - 2, one more than the original)
    generator_version = 2

    @property
    def min_length(self) -> int:
        return 1

    def _positions(self, lengths):
        return np.maximum(lengths, 5) - 2 + int(self.params["bos"])

    def _build_symbols(self):
        # '*' is always in the vocabulary so that models are interchangeable between mult=False and True
        return [str(i) for i in range(self.m)] + ["+", "-", "*", "(", ")", "="]

    def _problem(self, rng, n):
        m, B, N = self.m, n.shape[0], int(n.max())
        n_ops = 3 if self.params["mult"] else 2
        plus, minus, times, lp, rp, eq = (self.sym(s) for s in ("+", "-", "*", "(", ")", "="))
        op_tok = (plus, minus, times)
        tok = np.full((B, N), self.pad_id, dtype=np.int64)
        ans = np.empty(B, dtype=np.int64)
        # a tree of e tokens makes at most e draws (one per leaf, two per inner node, which owns 3 tokens)
        raw = rng.raw((B, N + 2)).tolist()
        for b in range(B):
            draws = iter(raw[b])
            out: list[int] = []

            def emit(e: int, draws=draws, out=out) -> int:
                if e <= 4:
                    d = next(draws) % m
                    if e == 1:
                        out.append(d)
                        return d
                    if e == 2:
                        out.extend((minus, d))
                        return -d % m
                    if e == 3:
                        out.extend((lp, d, rp))
                        return d
                    out.extend((lp, minus, d, rp))
                    return -d % m
                left = 1 + next(draws) % (e - 4)
                op = next(draws) % n_ops
                out.append(lp)
                a = emit(left)
                out.append(op_tok[op])
                c = emit(e - 3 - left)
                out.append(rp)
                return (a + c) % m if op == 0 else (a - c) % m if op == 1 else (a * c) % m

            ans[b] = emit(int(n[b]) - 1)
            out.append(eq)
            tok[b, : len(out)] = out
        return tok, ans
