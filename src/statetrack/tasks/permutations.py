"""Permutations as tuples: composition, cycles, parity, closure and the standard groups (exact, pure Python).

The one home of permutation algebra: ``groups`` builds its Cayley tables from these, and statetrack.theory's
constructions use them directly. A permutation of n points is a tuple ``p`` in one-line notation: ``p[i]`` is
the image of point i (0-based). Words are read left to right and the product applies the first letter first, as
in the group word problems: ``compose(p, q)[i] = q[p[i]]`` ("p, then q"), so the label of x_1 ... x_t is
y_t(i) = x_t(...x_1(i)...).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

Perm = tuple[int, ...]


def identity(n: int) -> Perm:
    return tuple(range(n))


def compose(p: Sequence[int], q: Sequence[int]) -> Perm:
    """p first, then q: i -> q[p[i]]."""
    return tuple(q[i] for i in p)


def inverse(p: Sequence[int]) -> Perm:
    inv = [0] * len(p)
    for i, j in enumerate(p):
        inv[j] = i
    return tuple(inv)


def is_permutation(p: Sequence[int]) -> bool:
    return sorted(p) == list(range(len(p)))


def cycles(p: Sequence[int]) -> list[tuple[int, ...]]:
    """Cycles of length >= 2, each written (c_0, c_1, ...) with p[c_j] = c_{j+1}."""
    seen, out = set(), []
    for start in range(len(p)):
        if start in seen or p[start] == start:
            continue
        cyc, i = [], start
        while i not in seen:
            seen.add(i)
            cyc.append(i)
            i = p[i]
        out.append(tuple(cyc))
    return out


def moved_points(p: Sequence[int]) -> int:
    return sum(1 for i, j in enumerate(p) if i != j)


def transpositions(p: Sequence[int]) -> list[tuple[int, int]]:
    """Swaps (a, b), in the order they act on a state vector, whose product is the permutation matrix of p.

    The permutation matrix P has P e_i = e_{p[i]} (the entry at position i moves to position p[i]). A cycle
    (c_0 ... c_{k-1}) is the k - 1 swaps (c_{k-2} c_{k-1}), (c_{k-3} c_{k-2}), ..., (c_0 c_1) applied in that
    order, so p needs n - (number of its cycles, fixed points included) swaps, at most (moved points) - 1.
    """
    out = []
    for cyc in cycles(p):
        out.extend((cyc[j], cyc[j + 1]) for j in range(len(cyc) - 2, -1, -1))
    return out


def parity(p: Sequence[int]) -> int:
    return len(transpositions(p)) % 2


def generate(generators: Iterable[Sequence[int]]) -> list[Perm]:
    """All products of the generators (the group they generate), identity first, then in BFS order."""
    gens = [tuple(g) for g in generators]
    if not gens:
        raise ValueError("need at least one generator")
    n = len(gens[0])
    if any(len(g) != n or not is_permutation(g) for g in gens):
        raise ValueError("generators must be permutations of one common set of points")
    e = identity(n)
    seen, order, frontier = {e}, [e], [e]
    while frontier:
        nxt = []
        for x in frontier:
            for g in gens:
                y = compose(x, g)
                if y not in seen:
                    seen.add(y)
                    order.append(y)
                    nxt.append(y)
        frontier = nxt
    return order


def symmetric_group(n: int) -> list[Perm]:
    return [tuple(p) for p in itertools.permutations(range(n))]


def alternating_group(n: int) -> list[Perm]:
    return [p for p in symmetric_group(n) if parity(p) == 0]


def cyclic_group(m: int) -> list[Perm]:
    """Z_m acting on m points: element j is the rotation i -> i + j mod m (element j is at index j)."""
    return [tuple((i + j) % m for i in range(m)) for j in range(m)]


def swaps(n: int) -> list[Perm]:
    """The n (n - 1) / 2 transpositions of S_n (the "S5 with swaps only" generators when n = 5)."""
    out = []
    for a, b in itertools.combinations(range(n), 2):
        p = list(range(n))
        p[a], p[b] = b, a
        out.append(tuple(p))
    return out


def word_products(letters: Sequence[Perm], word: Iterable[int]) -> list[Perm]:
    """Prefix products of a word (indices into ``letters``): [x_1, x_1 x_2, ...] (first letter acts first)."""
    n = len(letters[0])
    cur, out = identity(n), []
    for w in word:
        cur = compose(cur, letters[w])
        out.append(cur)
    return out
