"""Deterministic finite automata: the JSON format of ``statetrack theory dfa``, validation, minimisation.

JSON format::

    {"states": ["even", "odd"], "alphabet": ["0", "1"],
     "transitions": {"even": {"0": "even", "1": "odd"}, "odd": {"0": "odd", "1": "even"}},
     "start": "even", "accepting": ["even"]}

States may be strings or integers (JSON object keys are strings, so a state 3 is written "3" there); symbols are
single characters. The transition function must be total: every state has exactly one target per symbol.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


class DFAError(ValueError):
    """A malformed DFA; the message names the field and what is wrong with it."""


@dataclass(frozen=True)
class DFA:
    """States are 0..n-1 (``names`` keeps the user's names), symbols 0..|alphabet|-1.

    ``delta[q][a]`` is the state after reading symbol a in state q. ``outputs`` (optional) makes it a Moore
    machine: a label per state (e.g. the answer of a task); without it the label is acceptance (1 or 0).
    """

    names: tuple[str, ...]
    alphabet: tuple[str, ...]
    delta: tuple[tuple[int, ...], ...]
    start: int
    accepting: frozenset[int]
    outputs: tuple[int, ...] | None = None

    @property
    def n_states(self) -> int:
        return len(self.names)

    def __post_init__(self):
        n, s = len(self.names), len(self.alphabet)
        if n == 0:
            raise DFAError("states: the DFA needs at least one state")
        if s == 0:
            raise DFAError("alphabet: the DFA needs at least one symbol")
        if len(self.delta) != n or any(len(row) != s or any(not 0 <= q < n for q in row) for row in self.delta):
            raise DFAError("transitions: delta must be an n_states x n_symbols table of state indices")
        if not 0 <= self.start < n:
            raise DFAError(f"start: state index {self.start} out of range")
        if any(not 0 <= q < n for q in self.accepting):
            raise DFAError("accepting: state index out of range")
        if self.outputs is not None and len(self.outputs) != n:
            raise DFAError("outputs: need one label per state")

    def label(self, q: int) -> int:
        """The output of state q: ``outputs[q]``, or 1 / 0 for accepting / rejecting."""
        return self.outputs[q] if self.outputs is not None else int(q in self.accepting)

    # ---- parsing -------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, spec: object) -> DFA:
        """Validate a parsed JSON object; raises :class:`DFAError` naming what is wrong."""
        if not isinstance(spec, dict):
            raise DFAError(f"the DFA must be a JSON object, got {type(spec).__name__}")
        required = ("states", "alphabet", "transitions", "start", "accepting")
        missing = [k for k in required if k not in spec]
        if missing:
            raise DFAError(f"missing field(s) {missing}; a DFA needs {list(required)}")
        unknown = sorted(set(spec) - set(required))
        if unknown:
            raise DFAError(f"unknown field(s) {unknown}; a DFA has exactly {list(required)}")

        states = spec["states"]
        if not isinstance(states, list) or not states:
            raise DFAError("states: must be a non-empty list")
        names = []
        for s in states:
            if isinstance(s, bool) or not isinstance(s, str | int):
                raise DFAError(f"states: each state must be a string or an integer, got {s!r}")
            names.append(str(s))
        dup = sorted({s for s in names if names.count(s) > 1})
        if dup:
            raise DFAError(f"states: duplicate state(s) {dup}")
        index = {s: i for i, s in enumerate(names)}

        def state(x: object, where: str) -> int:
            if isinstance(x, bool) or not isinstance(x, str | int) or str(x) not in index:
                raise DFAError(f"{where}: {x!r} is not one of the states {names}")
            return index[str(x)]

        alphabet = spec["alphabet"]
        if not isinstance(alphabet, list) or not alphabet:
            raise DFAError("alphabet: must be a non-empty list of single characters")
        for a in alphabet:
            if not isinstance(a, str) or len(a) != 1:
                raise DFAError(f"alphabet: symbols must be single characters, got {a!r}")
        dup = sorted({a for a in alphabet if alphabet.count(a) > 1})
        if dup:
            raise DFAError(f"alphabet: duplicate symbol(s) {dup}")

        trans = spec["transitions"]
        if not isinstance(trans, dict):
            raise DFAError("transitions: must be an object {state: {symbol: state}}")
        for q in trans:
            if q not in index:
                raise DFAError(f"transitions: {q!r} is not one of the states {names}")
        delta = []
        for q in names:
            if q not in trans:
                raise DFAError(f"transitions: state {q!r} has no transitions (the DFA must be complete)")
            row = trans[q]
            if not isinstance(row, dict):
                raise DFAError(f"transitions[{q!r}]: must be an object {{symbol: state}}")
            extra = sorted(set(row) - set(alphabet))
            if extra:
                raise DFAError(f"transitions[{q!r}]: symbol(s) {extra} are not in the alphabet {alphabet}")
            lacking = [a for a in alphabet if a not in row]
            if lacking:
                raise DFAError(f"transitions[{q!r}]: no transition on symbol(s) {lacking} (the DFA must be complete)")
            delta.append(tuple(state(row[a], f"transitions[{q!r}][{a!r}]") for a in alphabet))

        start = state(spec["start"], "start")
        acc = spec["accepting"]
        if not isinstance(acc, list):
            raise DFAError("accepting: must be a list of states (possibly empty)")
        accepting = frozenset(state(q, "accepting") for q in acc)
        return cls(tuple(names), tuple(alphabet), tuple(delta), start, accepting)

    @classmethod
    def from_json(cls, text: str) -> DFA:
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as e:
            raise DFAError(f"not valid JSON: {e}") from None
        return cls.from_dict(spec)

    @classmethod
    def from_file(cls, path: str | Path) -> DFA:
        return cls.from_json(Path(path).read_text())

    @classmethod
    def from_function(
        cls,
        n_states: int,
        n_symbols: int,
        step,
        start: int,
        accepting: Iterable[int] = (),
        alphabet: Sequence[str] | None = None,
        names: Sequence[str] | None = None,
        outputs: Sequence[int] | None = None,
    ) -> DFA:
        """Build a DFA from ``step(q, a) -> q'`` on 0..n_states-1 and 0..n_symbols-1."""
        alphabet = tuple(alphabet) if alphabet is not None else tuple(chr(ord("a") + i) for i in range(n_symbols))
        names = tuple(names) if names is not None else tuple(str(i) for i in range(n_states))
        delta = tuple(tuple(step(q, a) for a in range(n_symbols)) for q in range(n_states))
        outputs = tuple(outputs) if outputs is not None else None
        return cls(names, alphabet, delta, start, frozenset(accepting), outputs)

    def to_dict(self) -> dict:
        return {
            "states": list(self.names),
            "alphabet": list(self.alphabet),
            "transitions": {
                self.names[q]: {a: self.names[self.delta[q][i]] for i, a in enumerate(self.alphabet)}
                for q in range(self.n_states)
            },
            "start": self.names[self.start],
            "accepting": [self.names[q] for q in sorted(self.accepting)],
        }

    # ---- running -------------------------------------------------------------------------------------------
    def encode(self, word: str, where: str = "word") -> list[int]:
        """Symbols of a string -> symbol ids; a character outside the alphabet raises DFAError."""
        ids, table = [], {a: i for i, a in enumerate(self.alphabet)}
        for pos, ch in enumerate(word):
            if ch not in table:
                raise DFAError(
                    f"{where}: character {ch!r} at position {pos} is not in the alphabet " f"{list(self.alphabet)}"
                )
            ids.append(table[ch])
        return ids

    def run(self, symbols: Iterable[int]) -> list[int]:
        """States after each prefix (not including the start state)."""
        q, out = self.start, []
        for a in symbols:
            q = self.delta[q][a]
            out.append(q)
        return out

    def accepts(self, word: str) -> bool:
        states = self.run(self.encode(word))
        return (states[-1] if states else self.start) in self.accepting

    # ---- structure -----------------------------------------------------------------------------------------
    def letter_maps(self) -> list[tuple[int, ...]]:
        """The map of each symbol on the states: maps[a][q] = delta[q][a]."""
        return [tuple(self.delta[q][a] for q in range(self.n_states)) for a in range(len(self.alphabet))]

    def minimize(self) -> DFA:
        """The minimal DFA of the same language, or Moore machine with the same outputs (reachable states, then
        Moore's partition refinement)."""
        reach, frontier = {self.start}, [self.start]
        while frontier:
            q = frontier.pop()
            for r in self.delta[q]:
                if r not in reach:
                    reach.add(r)
                    frontier.append(r)
        states = sorted(reach)
        first: dict[int, int] = {}
        block = {q: first.setdefault(self.label(q), len(first)) for q in states}
        while True:
            sig = {q: (block[q], tuple(block[r] for r in self.delta[q])) for q in states}
            ids: dict = {}
            for q in states:  # number blocks in order of first appearance: deterministic
                ids.setdefault(sig[q], len(ids))
            new = {q: ids[sig[q]] for q in states}
            if len(ids) == len(set(block.values())):
                block = new
                break
            block = new
        n = len(set(block.values()))
        rep = {}
        for q in states:
            rep.setdefault(block[q], q)
        names = tuple("/".join(self.names[q] for q in states if block[q] == b) for b in range(n))
        delta = tuple(tuple(block[r] for r in self.delta[rep[b]]) for b in range(n))
        accepting = frozenset(block[q] for q in states if q in self.accepting)
        outputs = None if self.outputs is None else tuple(self.outputs[rep[b]] for b in range(n))
        return DFA(names, self.alphabet, delta, block[self.start], accepting, outputs)
