"""The constructions on the library's tasks (:mod:`statetrack.tasks`): token ids -> construction letters,
Moore machines (DFAs with a label per state) for the regular Chomsky tasks, and an accuracy evaluation.

Special tokens: ``<bos>`` resets a Moore machine to its start state and is the identity for group
constructions (their state starts at the identity anyway); ``<pad>`` comes after every real token and is the
identity (its positions are masked out). Accuracy is measured only where the task's ``mask`` is True, against
its ``target``; "sequences all right" counts rows whose every masked position is right.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .dfa import DFA
from .krohn_rhodes import CascadeLRNN, krohn_rhodes


@dataclass
class Accuracy:
    positions: int
    correct: int
    sequences: int
    sequences_correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / max(1, self.positions)

    @property
    def sequence_accuracy(self) -> float:
        return self.sequences_correct / max(1, self.sequences)


def score(pred: torch.Tensor, batch) -> Accuracy:
    """Accuracy of predictions [B, T] against a task Batch, at its masked positions only."""
    ok = (pred == batch.target) | ~batch.mask
    return Accuracy(
        int(batch.mask.sum()), int(((pred == batch.target) & batch.mask).sum()), pred.shape[0], int(ok.all(-1).sum())
    )


def _vocab_index(task) -> dict[str, int]:
    return {s: i for i, s in task.vocab.items()}


# ---- Moore machines of the regular Chomsky tasks --------------------------------------------------------


def parity_machine(task) -> DFA:
    """Parity task: label = number of 1s mod 2."""
    ids = _vocab_index(task)
    n_sym = task.vocab_size

    def step(q, a):
        if a == ids["1"]:
            return 1 - q
        if a == ids.get("<bos>"):
            return 0
        return q

    return DFA.from_function(
        2, n_sym, step, 0, alphabet=[task.vocab[i] for i in range(n_sym)], names=["even", "odd"], outputs=[0, 1]
    )


def even_pairs_machine(task) -> DFA:
    """Even pairs: label = 1 iff the first bit differs from the last. States: start, (first, last)."""
    ids = _vocab_index(task)
    n_sym = task.vocab_size
    names = ["start", "00", "01", "10", "11"]

    def step(q, a):
        if a == ids.get("<bos>"):
            return 0
        if a in (ids["0"], ids["1"]):
            bit = int(a == ids["1"])
            first = bit if q == 0 else (q - 1) // 2
            return 1 + 2 * first + bit
        return q

    outputs = [0, 0, 1, 1, 0]
    return DFA.from_function(
        5, n_sym, step, 0, alphabet=[task.vocab[i] for i in range(n_sym)], names=names, outputs=outputs
    )


def modarith_machine(task) -> DFA:
    """Modular arithmetic without brackets (``d op d ... op d =``, * before + and -), evaluated left to right.

    After a digit the value so far is acc + P (P the signed current product term) and the future depends on
    (acc, P); after + or - on acc + P and the sign; after * on (acc, P); after = the label is acc + P mod m.
    A token in the wrong place leads to a dead state (never reached on the task's inputs).
    """
    m = task.params["m"]
    ids = _vocab_index(task)
    n_sym = task.vocab_size
    states: list[tuple] = [("dead",)]
    index: dict[tuple, int] = {("dead",): 0}

    def sid(s: tuple) -> int:
        if s not in index:
            index[s] = len(states)
            states.append(s)
        return index[s]

    start = sid(("op", 0, 1))  # as after "0 +": acc = 0, sign +
    digit = {ids[str(d)]: d for d in range(m)}
    plus, minus, times, eq = ids["+"], ids["-"], ids["*"], ids["="]
    bos, pad = ids.get("<bos>"), ids.get("<pad>")
    delta: dict[int, list[int]] = {}
    frontier = [0, start]
    while frontier:
        q = frontier.pop()
        if q in delta:
            continue
        s = states[q]
        row = []
        for a in range(n_sym):
            if a == bos:
                t = start
            elif a == pad:
                t = q
            elif s[0] == "op" and a in digit:  # ("op", acc, sign): a digit starts a term
                t = sid(("num", s[1], s[2] * digit[a] % m))
            elif s[0] == "mul" and a in digit:  # ("mul", acc, P)
                t = sid(("num", s[1], s[2] * digit[a] % m))
            elif s[0] == "num" and a in (plus, minus):  # ("num", acc, P)
                t = sid(("op", (s[1] + s[2]) % m, 1 if a == plus else m - 1))
            elif s[0] == "num" and a == times:
                t = sid(("mul", s[1], s[2]))
            elif s[0] == "num" and a == eq:
                t = sid(("ans", (s[1] + s[2]) % m))
            else:
                t = 0
            row.append(t)
            frontier.append(t)
        delta[q] = row
    n = len(states)
    outputs = [s[1] if s[0] == "ans" else -1 for s in states]
    names = ["/".join(map(str, s)) for s in states]
    return DFA.from_function(
        n,
        n_sym,
        lambda q, a: delta[q][a],
        start,
        alphabet=[task.vocab[i] for i in range(n_sym)],
        names=names,
        outputs=outputs,
    )


MACHINES = {"parity": parity_machine, "even-pairs": even_pairs_machine, "modarith": modarith_machine}


class MachineOnTask:
    """A Krohn-Rhodes cascade LRNN for a regular task: predictions [B, T] = label of the decoded state."""

    def __init__(self, task, dtype=torch.float32, backend="naive"):
        if task.family not in MACHINES:
            raise ValueError(f"no Moore machine for task family {task.family!r}; have {sorted(MACHINES)}")
        self.task = task
        self.cascade = krohn_rhodes(MACHINES[task.family](task))
        self.lrnn = CascadeLRNN(self.cascade, dtype=dtype, backend=backend)
        dfa = self.cascade.dfa
        self._labels = torch.tensor([max(dfa.label(q), 0) for q in range(dfa.n_states)] + [-1])

    def labels_and_states(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels [B, T], decoded machine states [B, T]); -1 where decoding failed."""
        st = self.lrnn.states(inputs)
        return self._labels[st], st  # -1 (a failed decode) indexes the trailing -1

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.labels_and_states(inputs)[0]


# ---- group and counting tasks ----------------------------------------------------------------------------


def _prime_powers(m: int) -> list[int]:
    out, p = [], 2
    while m > 1:
        if m % p == 0:
            q = 1
            while m % p == 0:
                m //= p
                q *= p
            out.append(q)
        p += 1
    return out


def cyclic_as_permutation(r: int, m: int) -> tuple[int, ...]:
    """Residue r of Z_m as a permutation of the fewest points: by the Chinese remainder theorem Z_m is the
    product of Z_{q} over its prime powers q, each a q-cycle, on sum(q) points (12 for Z_60)."""
    out, off = [], 0
    for q in _prime_powers(m) or [1]:
        out.extend(off + (i + r) % q for i in range(q))
        off += q
    return tuple(out)


def _element_perm(factors, e) -> tuple[int, ...]:
    parts = e if len(factors) > 1 else [e]
    out, off = [], 0
    for f, part in zip(factors, parts, strict=True):
        p = cyclic_as_permutation(int(part), f.n) if f.kind == "Z" else tuple(part)
        out.extend(off + x for x in p)
        off += len(p)
    return tuple(out)


def group_letters(task) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """(letter permutation for every token id, the task's elements as permutations) for a word problem.

    Permutation factors (S_n, A_n, D_n) act on their n points, Z_m factors by :func:`cyclic_as_permutation`,
    a direct product on the disjoint union. Token ids >= |G| (``<bos>``, ``<pad>``) act as the identity."""
    factors = task.group.factors
    perms = [_element_perm(factors, e) for e in task.elements.values()]
    ident = tuple(range(len(perms[0])))
    letters = [perms[i] if i < len(perms) else ident for i in range(task.vocab_size)]
    return letters, perms


def cyclic_letters(task) -> tuple[int, list[int]]:
    """(m, letter value per token id) for Z_m counting tasks: cycle-nav (left/stay/right) and z_m word
    problems (residue tokens)."""
    if task.family == "cycle-nav":
        m = task.params["n_states"]
        ids = _vocab_index(task)
        vals = [0] * task.vocab_size
        vals[ids["left"]], vals[ids["right"]] = m - 1, 1
        return m, vals
    m = task.group.order
    vals = [int(e) if i < m else 0 for i, e in enumerate([*task.elements.values()] + [0] * task.vocab_size)]
    return m, vals[: task.vocab_size]
