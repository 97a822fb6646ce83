"""Every construction is exact: on random words and on the library's tasks, at every prefix."""

from __future__ import annotations

import pytest
import torch

from statetrack.tasks import get_task, permutations
from statetrack.theory import (
    CyclicReflections,
    CyclicRotation,
    HouseholderParity,
    PermutationGroupLRNN,
    ScalarParity,
)
from statetrack.theory.on_tasks import cyclic_as_permutation, cyclic_letters, group_letters, score

T = 400


def words(n_letters: int, B: int = 3, T: int = T, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, n_letters, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cls", [ScalarParity, HouseholderParity])
def test_parity(cls):
    x = words(2)
    assert torch.equal(cls()(x), x.cumsum(1) % 2)


@pytest.mark.parametrize("m", [2, 3, 4, 7, 60])
@pytest.mark.parametrize("cls", [CyclicRotation, CyclicReflections])
def test_cyclic(cls, m):
    x = words(m)
    assert torch.equal(cls(m)(x), x.cumsum(1) % m)


def test_cyclic_in_float64_and_shapes():
    x = words(5, B=2, T=50)
    assert torch.equal(CyclicRotation(5, dtype=torch.float64)(x), x.cumsum(1) % 5)
    assert CyclicReflections(5)(x[:, :0]).shape == (2, 0)
    with pytest.raises(ValueError, match="letters must lie"):
        CyclicRotation(5)(x + 5)
    with pytest.raises(ValueError, match="m must be"):
        CyclicRotation(1)


def reference_products(c: PermutationGroupLRNN, x: torch.Tensor) -> torch.Tensor:
    return torch.tensor([[c.index[p] for p in permutations.word_products(c.letters, row)] for row in x.tolist()])


@pytest.mark.parametrize(
    ("letters", "n_h"),
    [
        (permutations.swaps(5), 1),  # S5 with swaps only: one DeltaNet step per token
        (permutations.symmetric_group(5), 4),
        (permutations.alternating_group(5), 4),
        (permutations.symmetric_group(3), 2),
        ([p for p in permutations.symmetric_group(5) if permutations.moved_points(p) <= 3], 2),
    ],
)
def test_permutation_groups(letters, n_h):
    c = PermutationGroupLRNN(letters)
    assert c.householders_per_token == n_h
    x = words(len(letters))
    assert torch.equal(c(x), reference_products(c, x))
    h = c.states(x)
    assert (h - h.round()).abs().max() < 1e-4  # the state stays a permutation of (1..n), numerically


def test_permutation_group_chunked_backend_agrees():
    c = PermutationGroupLRNN(permutations.swaps(4), backend="torch")
    x = words(len(c.letters), T=150)
    assert torch.equal(c(x), reference_products(c, x))


def test_permutation_group_rejects_bad_letters():
    with pytest.raises(ValueError, match="permutation"):
        PermutationGroupLRNN([(0, 0, 1)])
    with pytest.raises(ValueError, match="at least one"):
        PermutationGroupLRNN([])


def test_cyclic_as_permutation_uses_prime_powers():
    p = cyclic_as_permutation(1, 60)
    assert len(p) == 4 + 3 + 5
    order = next(k for k in range(1, 61) if permutations.word_products([p], [0] * k)[-1] == tuple(range(12)))
    assert order == 60


# ---- on the library's tasks -----------------------------------------------------------------------------


def test_on_group_tasks():
    for name in ("s5-swaps", "s3", "a4xz5"):
        task = get_task(name)
        letter_perms, elements = group_letters(task)
        used = sorted(set(task.input_ids))
        lookup = torch.full((task.vocab_size,), len(used), dtype=torch.long)
        lookup[used] = torch.arange(len(used))
        c = PermutationGroupLRNN([letter_perms[i] for i in used] + [tuple(range(len(elements[0])))], elements)
        b = task.sample(4, generator=torch.Generator().manual_seed(1), lengths=200)
        acc = score(c(lookup[b.input]), b)
        assert acc.correct == acc.positions == 4 * 200, name


@pytest.mark.parametrize("name", ["cycle-nav", "z60"])
def test_on_cyclic_tasks(name):
    task = get_task(name)
    m, vals = cyclic_letters(task)
    letters = torch.tensor(vals)
    b = task.sample(8, generator=torch.Generator().manual_seed(2), lengths=101)
    for c in (CyclicRotation(m), CyclicReflections(m)):
        acc = score(c(letters[b.input]), b)
        assert acc.correct == acc.positions > 0


def test_on_parity_task():
    task = get_task("parity")
    b = task.sample(8, generator=torch.Generator().manual_seed(3), lengths=(50, 80))
    bits = torch.tensor([0, 1] + [0] * (task.vocab_size - 2))[b.input]
    for c in (ScalarParity(), HouseholderParity()):
        acc = score(c(bits), b)
        assert acc.correct == acc.positions == 8
