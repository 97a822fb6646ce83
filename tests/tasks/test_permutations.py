"""Permutation helpers: the swap decomposition is the permutation matrix, the groups have the right orders."""

from __future__ import annotations

import itertools
import random

import torch

from statetrack.tasks import permutations


def perm_matrix(p):
    n = len(p)
    m = torch.zeros(n, n, dtype=torch.float64)
    for i, j in enumerate(p):
        m[j, i] = 1.0  # P e_i = e_{p[i]}
    return m


def swap_matrix(a, b, n):
    k = torch.zeros(n, dtype=torch.float64)
    k[a], k[b] = 2**-0.5, -(2**-0.5)
    return torch.eye(n, dtype=torch.float64) - 2 * torch.outer(k, k)


def test_transpositions_multiply_to_the_permutation_matrix():
    for n in (2, 3, 4, 5):
        for p in itertools.permutations(range(n)):
            prod = torch.eye(n, dtype=torch.float64)
            swaps = permutations.transpositions(p)
            for a, b in swaps:  # applied in order: later factors on the left
                prod = swap_matrix(a, b, n) @ prod
            assert torch.allclose(prod, perm_matrix(p), atol=1e-12)
            assert len(swaps) == n - sum(1 for _ in permutations.cycles(p)) - sum(1 for i in range(n) if p[i] == i)
            assert len(swaps) <= max(permutations.moved_points(p) - 1, 0)


def test_orders_and_conventions():
    assert len(permutations.generate(permutations.swaps(5))) == 120
    assert len(permutations.alternating_group(5)) == 60
    assert len(permutations.generate(permutations.cyclic_group(7)[1:2])) == 7
    p, q = (1, 2, 0), (0, 2, 1)
    assert permutations.compose(p, q) == tuple(q[p[i]] for i in range(3))  # p first, then q
    assert permutations.compose(p, permutations.inverse(p)) == (0, 1, 2)
    rng = random.Random(0)
    letters = permutations.symmetric_group(4)
    word = [rng.randrange(len(letters)) for _ in range(20)]
    prods = permutations.word_products(letters, word)
    cur = tuple(range(4))
    for w, y in zip(word, prods, strict=True):
        cur = tuple(letters[w][cur[i]] for i in range(4))  # y_t(i) = x_t(y_{t-1}(i))
        assert y == cur
