"""Registry and the API contract used by the training code."""

from __future__ import annotations

import json

import pytest
import torch

from statetrack.tasks import Batch, get_task, list_families, list_tasks

ISSUE_PRESETS = [
    "parity", "modarith", "modarith-brackets", "modarith-brackets-mult", "cycle-nav", "even-pairs", "s5",
    "s5-swaps", "s5-3moved", "s5-4tokens", "z60", "z60-2tokens", "a5", "s3", "s4", "a4xz5",
]  # fmt: skip

CHANCE = {
    "parity": 0.5,
    "even-pairs": 0.5,
    "modarith": 0.2,
    "modarith-brackets": 0.2,
    "cycle-nav": 0.2,
    "s5": 1 / 120,
}


def test_all_presets_registered():
    assert list_tasks() == ISSUE_PRESETS
    assert set(list_families()) >= {"parity", "modarith", "modarith-brackets", "word-problem"}


@pytest.mark.parametrize("name", ISSUE_PRESETS)
def test_contract(name):
    task = get_task(name)
    assert task.name == name and isinstance(task.params, dict)
    assert task.kind in ("chomsky", "group")
    assert sorted(task.vocab) == list(range(task.vocab_size))
    assert all(isinstance(m, str) for m in task.vocab.values())
    assert task.vocab[task.pad_id] == "<pad>" and task.vocab[task.bos_id] == "<bos>"
    assert 0 < task.chance < 1
    lo, hi = task.train_lengths
    assert lo <= hi and task.test_lengths[0] <= task.test_lengths[1]
    assert set(task.label_ids) <= set(range(task.vocab_size)) and task.pad_id not in task.label_ids
    b = task.sample(5, generator=torch.Generator().manual_seed(0), lengths=None)
    assert isinstance(b, Batch) and len(b) == 5
    assert b.input.device.type == "cpu" and b.lengths.dtype == torch.long
    assert int(b.input.max()) < task.vocab_size and int(b.target.max()) < task.vocab_size
    assert bool((b.target[b.mask] != task.pad_id).all()) and bool((b.target[~b.mask] == task.pad_id).all())
    if task.kind == "chomsky":
        assert bool((b.mask.sum(dim=1) == 1).all())
    d = task.describe()
    assert json.loads(json.dumps(d)) == d
    for key in (
        "name",
        "params",
        "vocab",
        "chance",
        "vocab_size",
        "pad_id",
        "kind",
        "train_lengths",
        "test_lengths",
    ):
        assert key in d
    assert json.dumps(d["params"])  # plain JSON values


@pytest.mark.parametrize("name", sorted(CHANCE))
def test_chance_levels(name):
    assert get_task(name).chance == pytest.approx(CHANCE[name])


def test_vocab_meanings():
    assert get_task("parity").vocab == {0: "0", 1: "1", 2: "<bos>", 3: "<pad>"}
    assert get_task("modarith").vocab == dict(
        enumerate(["0", "1", "2", "3", "4", "+", "-", "*", "=", "<bos>", "<pad>"])
    )
    v = get_task("modarith-brackets").vocab
    assert [v[i] for i in range(v.__len__())] == [
        "0",
        "1",
        "2",
        "3",
        "4",
        "+",
        "-",
        "*",
        "(",
        ")",
        "=",
        "<bos>",
        "<pad>",
    ]
    d = get_task("s5-swaps").describe()
    assert d["elements"]["1"] == [0, 1, 2, 4, 3] and d["num_generators"] == 11 and d["alphabet_size"] == 11
    assert get_task("s5-3moved").describe()["alphabet_size"] == 31
    assert get_task("s5-4tokens").describe()["alphabet_size"] == 121
    assert "x_t(...x_1(i)...)" in d["convention"]


def test_overrides_and_families():
    t = get_task("s5", num_tokens_per_transition=2, train_lengths=(1, 64))
    assert t.params["num_tokens_per_transition"] == 2 and t.train_lengths == (1, 64) and t.filler_id == 120
    assert get_task("word-problem", group="d4").params["group"] == "D4"
    assert get_task("modarith", m=7).chance == pytest.approx(1 / 7)


def test_unknown_task_lists_choices():
    with pytest.raises(ValueError, match=r"unknown task 's6'.*did you mean 's5'.*valid tasks: parity, modarith"):
        get_task("s6")
    assert get_task("S5").name == "s5"


def test_batch_helpers():
    b = get_task("parity").sample(10, generator=0)
    parts = list(b.split(4))
    assert [len(p) for p in parts] == [4, 4, 2]
    assert all(p.input.shape[1] == int(p.lengths.max()) for p in parts)
    assert torch.equal(b[3].input[0, : int(b.lengths[3])], b.input[3, : int(b.lengths[3])])
    assert b.to("cpu").input.data_ptr() == b.input.data_ptr() or torch.equal(b.to("cpu").input, b.input)
