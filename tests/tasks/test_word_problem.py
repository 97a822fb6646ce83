"""Group word problems: every label recomputed by multiplying elements by hand (also k tokens per step)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from statetrack.tasks import get_task

from .slow_paths import compose, identity, moved_points, parse_factors

GROUP_PRESETS = ["s5", "s5-swaps", "s5-3moved", "s5-4tokens", "z60", "z60-2tokens", "a5", "s3", "s4", "a4xz5"]


def expected_row(task, tokens: list[int]) -> tuple[list[int], list[bool]]:
    """Labels and mask of one row's content tokens (no <bos>), from the tokens alone.

    The label at content position j is the state after the tokens up to j - (k - 1) (fillers act as the
    identity); at positions whose source token (j - k + 1) is a filler, filler_target decides.
    """
    factors = parse_factors(task.params["group"])
    k, mode = task.params["num_tokens_per_transition"], task.params["filler_target"]
    elements = task.elements
    index = {repr(e): i for i, e in elements.items()}
    states, state = [], identity(factors)
    for tok in tokens:
        if tok != task.filler_id:
            state = compose(factors, state, elements[tok])
        states.append(index[repr(state)])
    labels, mask = [], []
    for j in range(len(tokens)):
        src = j - (k - 1)
        if src < 0:
            labels.append(0)
            mask.append(mode != "none")
        elif tokens[src] == task.filler_id:
            labels.append(task.filler_id if mode == "filler" else states[src])
            mask.append(mode != "none")
        else:
            labels.append(states[src])
            mask.append(True)
    return labels, mask


def check_rows(task, b):
    factors = parse_factors(task.params["group"])
    k = task.params["num_tokens_per_transition"]
    allowed = set(task.generator_ids.tolist())
    for i in range(len(b)):
        T = int(b.lengths[i])
        inp, tgt, msk = b.input[i].tolist(), b.target[i].tolist(), b.mask[i].tolist()
        assert inp[0] == task.bos_id and tgt[0] == task.pad_id and not msk[0]
        assert all(t == task.pad_id for t in inp[T:] + tgt[T:]) and not any(msk[T:])
        content = inp[1:T]
        for j, tok in enumerate(content):
            if j % k == 0:
                assert tok in allowed  # an element, from the generator set
            else:
                assert tok == task.filler_id
        labels, mask = expected_row(task, content)
        assert msk[1:T] == mask
        assert [t if m else task.pad_id for t, m in zip(labels, mask, strict=True)] == tgt[1:T]
    gens = [task.elements[g] for g in task.generator_ids.tolist()]
    spec = task.params["generators"]
    if spec == "swaps":
        assert all(moved_points(factors, e) <= 2 for e in gens)
    elif spec.startswith("moved<="):
        assert all(moved_points(factors, e) <= int(spec[7:]) for e in gens)


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(GROUP_PRESETS),
    seed=st.integers(0, 2**32),
    batch=st.integers(1, 4),
    lo=st.integers(1, 40),
    span=st.integers(0, 30),
)
def test_labels_match_slow_products(name, seed, batch, lo, span):
    task = get_task(name)
    b = task.sample(batch, generator=torch.Generator().manual_seed(seed), lengths=(lo, lo + span))
    assert b.input.shape == (batch, int(b.lengths.max()))
    assert bool(((b.lengths >= lo + 1) & (b.lengths <= lo + span + 1)).all())  # <bos> + tokens
    check_rows(task, b)


@settings(max_examples=30, deadline=None)
@given(
    group=st.sampled_from(["S5", "Z60", "A4xZ5", "S3", "D4"]),
    k=st.integers(1, 5),
    mode=st.sampled_from(["filler", "state", "none"]),
    seed=st.integers(0, 2**32),
    length=st.integers(1, 30),
)
def test_tokens_per_transition_variants(group, k, mode, seed, length):
    task = get_task("word-problem", group=group, num_tokens_per_transition=k, filler_target=mode)
    check_rows(task, task.sample(3, generator=seed, lengths=length))


def test_s5_4tokens_by_hand():
    """The paper's layout: element, 3 fillers (id 120), ...; y_1..y_3 = identity; y_i on its block's end."""
    task = get_task("s5-4tokens")
    assert task.filler_id == 120 and task.vocab[120] == "<filler>" and task.vocab_size == 123
    b = task.sample(1, generator=0, lengths=9)
    inp, tgt = b.input[0].tolist(), b.target[0].tolist()
    x1, x2, x3 = inp[1], inp[5], inp[9]
    assert inp[2:5] == inp[6:9] == [120, 120, 120]
    y1, y2 = x1, task.group.compose(x1, x2)
    # the paper's reading (the default, filler_target="state"): the filler is the identity, y_{i+3} = x_1...x_i
    assert task.params["filler_target"] == "state"
    assert tgt == [task.pad_id, 0, 0, 0, y1, y1, y1, y1, y2, y2]
    assert x3 in task.generator_ids
    # the follow-up code's variant (automl/DeltaProduct s_token): fillers labelled with the filler token
    f = get_task("s5-4tokens", filler_target="filler").sample(1, generator=0, lengths=9)
    assert torch.equal(f.input, b.input)
    assert f.target[0].tolist() == [task.pad_id, 0, 0, 0, y1, 120, 120, 120, y2, 120]


def test_state_variant_label_everywhere():
    task = get_task("s5-4tokens")
    b = task.sample(2, generator=0, lengths=12)
    assert bool(b.mask[:, 1:].all()) and bool((b.target[:, 1:] < 120).all())
    assert 120 not in task.label_ids and 120 in get_task("s5-4tokens", filler_target="filler").label_ids
    none = get_task("s5-4tokens", filler_target="none").sample(2, generator=0, lengths=12)
    assert none.mask[0].tolist() == [j >= 4 and (j - 4) % 4 == 0 for j in range(13)]


def test_label_distribution_covers_group():
    """Swaps generate S5: over many positions every element of S5 appears as a label."""
    task = get_task("s5-swaps")
    b = task.sample(64, generator=0, lengths=64)
    assert set(b.target[b.mask].tolist()) == set(range(120))
    assert set(b.input[:, 1:].unique().tolist()) == set(task.generator_ids.tolist())


def test_api_attributes():
    task = get_task("s5")
    assert task.kind == "group" and task.vocab_size == 122 and task.pad_id == 121 and task.bos_id == 120
    assert task.chance == pytest.approx(1 / 120)
    assert task.train_lengths == (32, 32) and task.test_lengths == (500, 500)
    assert task.elements[0] == [0, 1, 2, 3, 4] and task.vocab[0] == "[0,1,2,3,4]"
    assert get_task("z60").elements[17] == 17 and get_task("a4xz5").elements[1] == [[0, 1, 2, 3], 1]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"group": "S5", "generators": "odd"}, "unknown generators 'odd'; valid choices"),
        ({"group": "A5", "generators": "swaps"}, "not the whole group"),
        ({"group": "Q8"}, "cannot parse group"),
        ({"num_tokens_per_transition": 0}, "num_tokens_per_transition must be an int >= 1"),
        ({"filler_target": "zero"}, r"filler_target must be one of \['filler', 'state', 'none'\]"),
        ({"train_lengths": 0}, "below the minimum 1"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_task("word-problem", **kwargs)
