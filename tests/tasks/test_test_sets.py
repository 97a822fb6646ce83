"""Fixed test sets: deterministic (golden hashes), versioned, duplicate-free, and disjoint from training."""

from __future__ import annotations

import hashlib

import pytest
import torch

from statetrack.tasks import TEST_SET_VERSION, get_task

# sha256 of the first 64 test sequences (Task.test_set_info). These pin the generators: if one changes on
# purpose, bump TEST_SET_VERSION in tasks/base.py and update the hashes here.
GOLDEN_TEST_SETS = {
    "parity": "38e3733b367b5d5690704c0262aa3bc8b5517d754e53bb43bbc665476ddd4684",
    "modarith": "9331f7192d72d1162db6c0766081ff1bc4970b3b1780b2f2b855846d48159e79",
    "modarith-brackets": "26d11f2269fe64db25c7ab2c31aa879d87274a1fb57d891c160790d6b51051db",
    "cycle-nav": "962a2ce126e62c8f27a9ac83622f9e210858cd17acc705b4882d36530e82df56",
    "s5-4tokens": "bafe11a518b77aca8dbe9b501dc29b8baf3da918c88805590e8f48accea48f77",
    "a4xz5": "a87f59cca6b7329e038a1dd24467a031f749af0391f316de8ee571a9db0c320d",
}
# sha256 of a training batch of 16 from torch.Generator().manual_seed(0): (name, params, seed) fixes the data
GOLDEN_TRAIN = {
    "parity": "fbea114165d185f129a959b975ae2145a8f3a5ecf64adb791fc513ac5b47234d",
    "s5": "e5485f8d1cd6d150555edd28eb743fe62fa590edb417aa25e262392a64fcb0f8",
}


def batch_sha(b) -> str:
    d = hashlib.sha256()
    for t in (b.input, b.target, b.mask.to(torch.uint8), b.lengths):
        d.update(t.numpy().tobytes())
    return d.hexdigest()


def rows(b) -> set[tuple[int, ...]]:
    return {tuple(b.input[i, : int(b.lengths[i])].tolist()) for i in range(len(b))}


def test_version():
    assert TEST_SET_VERSION == 1


@pytest.mark.parametrize("name", sorted(GOLDEN_TEST_SETS))
def test_golden_test_sets(name):
    info = get_task(name).test_set_info(64)
    assert info["version"] == TEST_SET_VERSION and info["size"] == 64
    assert info["sha256"] == GOLDEN_TEST_SETS[name]


@pytest.mark.parametrize("name", sorted(GOLDEN_TRAIN))
def test_golden_training_batches(name):
    b = get_task(name).sample(16, generator=torch.Generator().manual_seed(0))
    assert batch_sha(b) == GOLDEN_TRAIN[name]


def test_fresh_samples_per_call_and_reproducible_by_seed():
    task = get_task("s5")
    g = torch.Generator().manual_seed(7)
    a, b = task.sample(8, generator=g), task.sample(8, generator=g)
    assert not torch.equal(a.input, b.input)
    again = task.sample(8, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.input, again.input) and torch.equal(a.target, again.target)
    torch.manual_seed(3)
    x = task.sample(4)
    torch.manual_seed(3)
    assert torch.equal(x.input, task.sample(4).input)  # generator=None: torch's global generator


def test_small_is_prefix_of_paper_and_in_range():
    task = get_task("parity")
    paper, small = task.test_set("paper"), task.test_set("small")
    assert len(paper) == 8192 and len(small) == 1024 and paper.input.shape[1] == 256
    s = small.input.shape[1]
    assert torch.equal(paper.input[:1024, :s], small.input) and torch.equal(paper.target[:1024, :s], small.target)
    assert int(paper.lengths.min()) == 40 and int(paper.lengths.max()) == 256
    assert len(rows(paper)) == 8192  # no duplicates
    assert bool((paper.mask.sum(dim=1) == 1).all())


def test_group_test_set_shape():
    task = get_task("s5")
    ts = task.test_set("small")
    assert ts.input.shape == (1024, 501) and bool((ts.lengths == 501).all())
    assert bool(ts.mask[:, 1:].all()) and not bool(ts.mask[:, 0].any())
    assert torch.equal(ts.input, get_task("s5").test_set("small").input)  # deterministic, new instance
    assert task.test_set_size("paper") == 40000
    assert get_task("modarith-brackets").test_set_size("paper") == 8192


def test_training_never_contains_test_sequences_tiny_space():
    """Length 6 parity has 32 distinct sequences; half are in the test set. Training must avoid all 16."""
    task = get_task("parity", train_lengths=(6, 6), test_lengths=(6, 6), test_size=16)
    test = rows(task.test_set())
    assert len(test) == 16
    train = task.sample(2000, generator=0)
    assert not rows(train) & test and len(rows(train)) == 16
    unfiltered = task.sample(2000, generator=0, exclude_test=False)
    assert rows(unfiltered) & test  # the check above is not vacuous


def test_training_never_contains_test_sequences_presets():
    """The paper's protocol overlaps at length 40 (train 3-40, test 40-256)."""
    for name in ("parity", "modarith-brackets"):
        task = get_task(name)
        test40 = {r for r in rows(task.test_set()) if len(r) == 40}
        assert test40
        assert not rows(task.sample(1024, generator=1, lengths=40)) & test40


def test_exhausted_spaces_raise():
    with pytest.raises(ValueError, match="only 32 distinct sequences"):
        get_task("parity", test_lengths=(6, 6), test_size=40).test_set()
    task = get_task("parity", train_lengths=(3, 3), test_lengths=(3, 3), test_size=4)
    with pytest.raises(RuntimeError, match="outside the test set"):
        task.sample(8, generator=0)


def test_bad_sizes():
    with pytest.raises(ValueError, match="'paper', 'small' or a positive int"):
        get_task("parity").test_set("huge")
    with pytest.raises(ValueError, match="test_size must be >= 1"):
        get_task("parity", test_size=0)


def test_sampling_from_threads_matches_serial():
    """The trainer prefetches batches in threads: results must not depend on it."""
    from concurrent.futures import ThreadPoolExecutor

    task = get_task("parity")

    def draw(seed):
        return task.sample(256, generator=torch.Generator().manual_seed(seed), lengths=(30, 60)).input

    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(draw, range(8)))
    assert all(torch.equal(a, draw(s)) for s, a in enumerate(threaded))
