"""Krohn-Rhodes cascades: every level is permutation-reset, the cascade tracks the DFA exactly, and the LRNN
stack computes the same states on long random words and on the library's regular tasks."""

from __future__ import annotations

import importlib
import random

import pytest
import torch

from statetrack.tasks import get_task
from statetrack.theory import DFA, CascadeLRNN, krohn_rhodes
from statetrack.theory.krohn_rhodes import _is_const, _is_perm, _needs_old_state
from statetrack.theory.on_tasks import MACHINES, MachineOnTask, score


def random_dfa(n: int, s: int, seed: int) -> DFA:
    r = random.Random(seed)
    d = [[r.randrange(n) for _ in range(s)] for _ in range(n)]
    return DFA.from_function(n, s, lambda q, a: d[q][a], 0, [q for q in range(n) if r.random() < 0.5])


def check(dfa: DFA, T: int = 150, B: int = 3, seed: int = 0):
    cascade = krohn_rhodes(dfa)
    for lv in cascade.levels:
        assert all(_is_perm(f) or _is_const(f) for f in lv.maps)
    lrnn = CascadeLRNN(cascade)
    x = torch.randint(0, len(dfa.alphabet), (B, T), generator=torch.Generator().manual_seed(seed))
    ref = torch.tensor([cascade.dfa.run(row) for row in x.tolist()])
    assert torch.equal(lrnn.states(x), ref)
    assert [cascade.run(row) for row in x.tolist()] == ref.tolist()
    return cascade, lrnn


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7])
def test_random_dfas(n):
    for seed in range(4):
        check(random_dfa(n, 2 + seed % 2, 100 * n + seed), T=120)


def test_group_dfa_is_one_permutation_level():
    dfa = DFA.from_function(3, 2, lambda q, a: (q + a) % 3, 0, [0])  # counting mod 3
    cascade, lrnn = check(dfa)
    assert cascade.depth == 1 and not cascade.levels[0].resets
    assert lrnn.describe()["householders_per_token"] == [2]  # a 3-cycle: two swap reflections


def test_flip_flop_and_old_state():
    # flip-flop (set / reset / read): a reset automaton, one level
    ff = DFA.from_function(2, 3, lambda q, a: {0: 1, 1: 0, 2: q}[a], 0, [1])
    cascade, _ = check(ff)
    assert cascade.depth == 1 and cascade.levels[0].resets
    # a DFA whose lower level needs the upper level's state before a reset: the layer keeps a second block
    found = False
    for seed in range(40):
        cascade, lrnn = check(random_dfa(4, 2, seed), T=200)
        for lv, ly in zip(cascade.levels, lrnn.layers, strict=True):
            assert ly.two_blocks == _needs_old_state(lv)
            if ly.two_blocks:
                found = True
                assert ly.table.dim == 2 * lv.n and ly.table.n_h == 2 * lv.n
        if found:
            break
    assert found


def test_one_state_and_empty_words():
    one = DFA.from_function(1, 2, lambda q, a: 0, 0, [0])
    cascade = krohn_rhodes(one)
    lrnn = CascadeLRNN(cascade)
    assert cascade.depth == 0
    assert lrnn.accepts([[], [0, 1, 1]]) == [True, True]
    dfa = DFA.from_function(3, 2, lambda q, a: (q + a) % 3, 0, [0])
    assert CascadeLRNN(krohn_rhodes(dfa)).accepts([[], [1], [1, 1, 1], [0, 1, 0, 1, 1]]) == [True, False, True, True]


def test_minimisation_is_reported_and_optional():
    # two copies of the parity DFA: 4 states, minimal 2
    dfa = DFA.from_function(4, 2, lambda q, a: (q + a) % 2 + 2 * (q // 2), 0, [0, 2])
    cascade = krohn_rhodes(dfa)
    assert cascade.dfa.n_states == 2 and cascade.notes
    assert krohn_rhodes(dfa, minimize=False).dfa.n_states == 4


@pytest.mark.parametrize("name", ["parity", "even-pairs", "modarith"])
def test_on_regular_tasks(name):
    task = get_task(name)
    machine = MachineOnTask(task)
    L = 61 if name == "modarith" else 60
    b = task.sample(8, generator=torch.Generator().manual_seed(0), lengths=L)
    labels, states = machine.labels_and_states(b.input)
    acc = score(labels, b)
    assert acc.correct == acc.positions == 8
    dfa = machine.cascade.dfa
    assert states.tolist() == [dfa.run(r) for r in b.input.tolist()]


def test_task_machines_agree_with_task_labels():
    # the Moore machines themselves (before any LRNN) reproduce the tasks' answers
    for name in MACHINES:
        task = get_task(name)
        dfa = MACHINES[name](task)
        b = task.sample(64, generator=torch.Generator().manual_seed(5), lengths=(3, 41))
        for row, tgt, msk in zip(b.input.tolist(), b.target, b.mask, strict=True):
            states = dfa.run(row)
            for t in msk.nonzero().flatten().tolist():
                assert dfa.label(states[t]) == int(tgt[t])


def test_without_the_second_block_the_stack_would_be_wrong(monkeypatch):
    # why reset layers keep their old state: read only the state after a reset, and the level below is lost
    kr = importlib.import_module("statetrack.theory.krohn_rhodes")  # the module (the package exports the function)

    for seed in range(40):
        dfa = random_dfa(4, 2, seed)
        cascade = krohn_rhodes(dfa)
        if any(_needs_old_state(lv) for lv in cascade.levels):
            break
    x = torch.randint(0, 2, (4, 300), generator=torch.Generator().manual_seed(0))
    ref = torch.tensor([cascade.dfa.run(row) for row in x.tolist()])
    assert torch.equal(CascadeLRNN(cascade).states(x), ref)
    monkeypatch.setattr(kr, "_needs_old_state", lambda lv: False)
    assert not torch.equal(CascadeLRNN(cascade).states(x), ref)
