"""Chomsky tasks: format, labels against Python's own arithmetic, parameter errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from statetrack.tasks import get_task

from .slow_paths import chomsky_answer

CHOMSKY = ["parity", "modarith", "modarith-brackets", "modarith-brackets-mult", "cycle-nav", "even-pairs"]


def check_rows(task, b):
    """Every row: <bos>, the problem, padding; one label at the last position equal to the slow answer."""
    for i in range(len(b)):
        L = int(b.lengths[i])
        inp, tgt, msk = b.input[i].tolist(), b.target[i].tolist(), b.mask[i].tolist()
        assert inp[0] == task.bos_id
        assert all(t == task.pad_id for t in inp[L:]) and all(t == task.pad_id for t in tgt[L:])
        assert all(t in task.input_ids for t in inp[1:L])
        assert msk == [j == L - 1 for j in range(len(msk))]
        assert all(t == task.pad_id for j, t in enumerate(tgt) if j != L - 1)
        problem = task.decode(inp[1:L])
        assert tgt[L - 1] == chomsky_answer(task.family, problem, task.params), problem
        assert tgt[L - 1] in task.label_ids


@settings(max_examples=30, deadline=None)
@given(
    name=st.sampled_from(CHOMSKY),
    seed=st.integers(0, 2**32),
    batch=st.integers(1, 6),
    lo=st.integers(3, 60),
    span=st.integers(0, 40),
)
def test_labels_match_python(name, seed, batch, lo, span):
    task = get_task(name)
    if name == "modarith" and span == 0 and lo % 2 == 0:
        span = 1  # modarith has odd lengths only (tested in test_bad_parameters)
    b = task.sample(batch, generator=torch.Generator().manual_seed(seed), lengths=(lo, lo + span))
    assert b.input.shape == b.target.shape == b.mask.shape == (batch, int(b.lengths.max()))
    assert b.input.dtype == b.target.dtype == torch.long and b.mask.dtype == torch.bool
    # Batch.lengths are input positions: the task length itself, except for brackets (original rule)
    assert bool(((b.lengths >= task.positions(lo)) & (b.lengths <= task.positions(lo + span))).all())
    check_rows(task, b)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32), m=st.integers(2, 12), mult=st.booleans(), brackets=st.booleans())
def test_modarith_other_moduli(seed, m, mult, brackets):
    task = get_task("modarith-brackets" if brackets else "modarith", m=m, mult=mult)
    b = task.sample(8, generator=seed, lengths=(3, 31))
    check_rows(task, b)
    if not mult:
        assert not bool((b.input == task.sym("*")).any())


def test_train_batch_uses_train_range_and_all_lengths():
    task = get_task("parity")
    b = task.sample(4096, generator=torch.Generator().manual_seed(0))
    assert set(b.lengths.tolist()) == set(range(3, 41))
    mod = get_task("modarith").sample(2048, generator=1)
    assert set(mod.lengths.tolist()) == set(range(3, 41, 2))  # odd lengths only: <bos> d (op d)* =


def test_cycle_nav_and_even_pairs_by_hand():
    cyc = get_task("cycle-nav")
    assert cyc.vocab == {
        0: "0",
        1: "1",
        2: "2",
        3: "3",
        4: "4",
        5: "left",
        6: "stay",
        7: "right",
        8: "<bos>",
        9: "<pad>",
    }
    ep = get_task("even-pairs")
    b = ep.sample(256, generator=3, lengths=(2, 12))
    for i in range(len(b)):
        L = int(b.lengths[i])
        bits = b.input[i, 1:L].tolist()
        assert int(b.target[i, L - 1]) == int(bits[0] != bits[-1])


def test_brackets_grammar_and_mult_switch():
    plain = get_task("modarith-brackets")
    b = plain.sample(64, generator=0, lengths=40)
    assert not bool((b.input == plain.sym("*")).any())
    mult = get_task("modarith-brackets-mult").sample(64, generator=0, lengths=40)
    assert bool((mult.input == plain.sym("*")).any())
    for row in b.input.tolist():
        depth = 0
        for t in plain.decode(row[1:]):
            depth += {"(": 1, ")": -1}.get(t, 0)
            assert depth >= 0
        assert depth == 0


def test_brackets_lengths_follow_the_original_generator():
    """xLSTM's modular_arithmetic_with_brackets: length L -> an expression of max(L, 5) - 3 tokens, then
    '=' (the answer and a pad follow there); the model reads max(L, 5) - 2 tokens, + <bos> here."""
    task = get_task("modarith-brackets")
    for L, expr in ((3, 2), (4, 2), (5, 2), (6, 3), (40, 37), (256, 253)):
        b = task.sample(8, generator=L, lengths=L)
        assert b.lengths.tolist() == [expr + 2] * 8 and task.positions(L) == expr + 2
        eq = task.sym("=")
        assert bool((b.input[:, expr + 1] == eq).all()) and bool(b.mask[:, expr + 1].all())
        assert not bool((b.input[:, 1 : expr + 1] == eq).any())
    ts = task.test_set(256)
    assert int(ts.lengths.min()) >= 39 and int(ts.lengths.max()) <= 255  # test lengths 40-256
    assert get_task("modarith-brackets", bos=False).positions(40) == 38


def test_modarith_test_lengths_follow_the_original_generator():
    """xLSTM's modular_arithmetic draws 2k - 1 with k uniform in ceil(min / 2)..ceil(max / 2): test 39..255."""
    task = get_task("modarith")
    assert task.test_lengths == (39, 255)
    lengths = set(task.test_set(2048).lengths.tolist())
    assert min(lengths) == 39 and max(lengths) == 255 and all(v % 2 for v in lengths)


def test_without_bos():
    task = get_task("parity", bos=False, train_lengths=(1, 10))
    assert task.bos_id is None and task.min_length == 1 and task.vocab_size == 4
    b = task.sample(32, generator=0)
    for i in range(len(b)):
        L = int(b.lengths[i])
        assert int(b.target[i, L - 1]) == b.input[i, :L].sum().item() % 2
    assert (
        get_task("modarith", bos=False, train_lengths=(2, 10)).sample(4, generator=0).lengths.remainder(2).eq(0).all()
    )


@pytest.mark.parametrize(
    "name, kwargs, lengths, match",
    [
        ("parity", {}, 1, "below the minimum 2"),
        ("modarith", {}, 2, "below the minimum 3"),
        ("modarith", {}, 40, "odd"),
        ("modarith", {}, (40, 40), "odd"),
        ("modarith", {"m": 1}, None, "m must be in"),
        ("modarith-brackets", {"m": 0}, None, "m must be in"),
        ("cycle-nav", {"n_states": 1}, None, "n_states"),
        ("parity", {"train_lengths": (1, 40)}, None, "train_lengths: length 1 is below the minimum"),
        ("parity", {"modulus": 3}, None, r"unknown parameter\(s\) \['modulus'\].*valid parameters"),
        ("parity", {}, (10, 5), "lo <= hi"),
    ],
)
def test_bad_parameters(name, kwargs, lengths, match):
    with pytest.raises(ValueError, match=match):
        get_task(name, **kwargs).sample(2, generator=0, lengths=lengths)


def test_explicit_per_row_lengths():
    task = get_task("modarith")
    b = task.sample(3, generator=0, lengths=[3, 41, 7])
    assert b.lengths.tolist() == [3, 41, 7] and b.input.shape == (3, 41)
    with pytest.raises(ValueError, match="batch_size = 3"):
        task.sample(3, generator=0, lengths=[3, 5])
    with pytest.raises(ValueError, match="batch_size"):
        task.sample(0, generator=0)
