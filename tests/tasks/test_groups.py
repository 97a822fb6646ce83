"""Groups: sizes, group axioms of the Cayley tables, canonical order, and the scan against a slow fold."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statetrack.tasks import get_group, prefix_products

from .slow_paths import compose, identity, moved_points, parse_factors

PRESET_GROUPS = ["S5", "A5", "S3", "S4", "Z60", "A4xZ5"]


@pytest.mark.parametrize(
    "name, order",
    [("S5", 120), ("A5", 60), ("S3", 6), ("S4", 24), ("Z60", 60), ("A4xZ5", 60), ("D4", 8), ("Z2xZ2", 4)],
)
def test_orders(name, order):
    assert get_group(name).order == order


def test_generator_set_sizes():
    s5 = get_group("S5")
    assert s5.allowed_inputs("swaps").size == 11  # identity + 10 transpositions
    assert s5.allowed_inputs("moved<=3").size == 31  # + 20 three-cycles
    assert s5.allowed_inputs("all").size == 120
    assert get_group("A5").allowed_inputs("moved<=3").size == 21  # identity + 20 three-cycles


@pytest.mark.parametrize("name", PRESET_GROUPS + ["D5", "Z2xZ3xS3"])
def test_group_axioms(name):
    g = get_group(name)
    t = g.table.astype(np.int64)
    G = g.order
    ids = np.arange(G)
    assert t.min() >= 0 and t.max() < G  # closure
    assert (t[0] == ids).all() and (t[:, 0] == ids).all()  # id 0 is the identity
    assert (np.sort(t, axis=1) == ids).all() and (np.sort(t, axis=0) == ids[:, None]).all()  # Latin square
    assert (t[ids, g.inverse] == 0).all() and (t[g.inverse, ids] == 0).all()  # inverses
    lhs = t[t[:, :, None], ids[None, None, :]]  # (a b) c
    rhs = t[ids[:, None, None], t[None, :, :]]  # a (b c)
    assert (lhs == rhs).all()  # associativity, all G^3 triples


@pytest.mark.parametrize("name", PRESET_GROUPS + ["D4"])
def test_table_matches_element_composition(name):
    """table[a, b] is 'a then b' on the JSON elements, composed by plain Python; moved points agree."""
    g = get_group(name)
    factors = parse_factors(name)
    index = {repr(e): i for i, e in enumerate(g.elements)}
    assert len(index) == g.order and g.elements[0] == identity(factors)
    for a, b in itertools.product(range(g.order), repeat=2):
        assert g.table[a, b] == index[repr(compose(factors, g.elements[a], g.elements[b]))]
    assert [moved_points(factors, e) for e in g.elements] == g.moved.tolist()


def test_canonical_order():
    assert list(get_group("S5").elements) == [list(p) for p in itertools.permutations(range(5))]
    a5 = get_group("A5").elements
    assert a5 == tuple(sorted(a5)) and all(
        sum(p[i] > p[j] for i in range(5) for j in range(i + 1, 5)) % 2 == 0 for p in a5
    )
    assert list(get_group("Z60").elements) == list(range(60))
    assert get_group("A4xZ5").elements[:2] == ([[0, 1, 2, 3], 0], [[0, 1, 2, 3], 1])


def test_convention_apply_first_element_first():
    """y(i) = x2(x1(i)): for x1 = (0 1) and x2 = (1 2), state(0) = x2(x1(0)) = x2(1) = 2."""
    g = get_group("S3")
    x1, x2 = g.elements.index([1, 0, 2]), g.elements.index([0, 2, 1])
    assert g.elements[g.compose(x1, x2)] == [2, 0, 1]


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(PRESET_GROUPS + ["D6"]),
    seed=st.integers(0, 2**32),
    B=st.integers(1, 4),
    N=st.integers(1, 70),
)
def test_prefix_products_match_left_fold(name, seed, B, N):
    g = get_group(name)
    factors = parse_factors(name)
    x = np.random.default_rng(seed).integers(0, g.order, (B, N))
    y = prefix_products(g.table, x)
    for b in range(B):
        state = identity(factors)
        for t in range(N):
            state = compose(factors, state, g.elements[x[b, t]])
            assert g.elements[y[b, t]] == state


@pytest.mark.parametrize(
    "name, generators, match",
    [
        ("S5", "swapz", "valid choices: 'all', 'swaps'"),
        ("A5", "swaps", "subgroup of order 1, not the whole group.*all, moved<=3"),
        ("S5", "moved<=1", "subgroup of order 1"),
        ("Z60", "swaps", "subgroup of order 1"),
    ],
)
def test_bad_generators(name, generators, match):
    with pytest.raises(ValueError, match=match):
        get_group(name).allowed_inputs(generators)


@pytest.mark.parametrize(
    "name, match",
    [
        ("S9", "2 <= n <= 6"),
        ("Z1", "m >= 2"),
        ("Q8", "cannot parse"),
        ("S5x", "cannot parse"),
        ("Z3000", "larger"),
    ],
)
def test_bad_group_names(name, match):
    with pytest.raises(ValueError, match=match):
        get_group(name)
