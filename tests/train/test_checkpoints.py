"""Checkpoints: the last train.keep_last kept, damaged files named with the reason, the newest good one used (by a
resume, which then continues exactly, and by `statetrack eval`), partial writes cleaned up."""

from __future__ import annotations

import pickle

import pytest
import torch

from statetrack.cli import main
from statetrack.train import (
    CheckpointError,
    find_checkpoints,
    load_checkpoint,
    load_config,
    read_checkpoint,
    remove_checkpoints,
    save_checkpoint,
    train,
)
from statetrack.train.checkpoint import RESUME_KEYS, checkpoint_problem

from .standin_task import TinyParity

BASE = ["model.mixer=diagonal_rnn", "model.d_model=8", "model.n_layers=1", "model.mlp_ratio=0",
        "train.batch_size=16", "train.lr=3e-3", "train.log_every=2", "train.progress=false", "train.threads=1",
        "train.ckpt_every=2"]  # fmt: skip


def run(folder, *extra, **kw):
    return train(load_config(None, [*BASE, f"train.out_dir={folder}", *extra]), task=TinyParity(), **kw)


def real_run(folder, steps=4):
    """A run on the real parity task (what `statetrack eval` evaluates on)."""
    cfg = load_config(None, [*BASE, f"train.out_dir={folder}", f"train.steps={steps}", "train.train_lengths=[3,12]",
                             "train.eval_samples=4", "train.task_args={test_size_small: 4}"])  # fmt: skip
    return train(cfg)


def names(folder):
    return [p.name for p in find_checkpoints(folder)]


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def flip_middle(path):
    data = bytearray(path.read_bytes())
    i = len(data) // 2
    data[i : i + 16] = bytes(255 - b for b in data[i : i + 16])
    path.write_bytes(bytes(data))


def test_keeps_the_last_k(tmp_path):
    run(tmp_path / "a", "train.steps=10")
    assert names(tmp_path / "a") == ["checkpoint.pt", "checkpoint.step_00000008.pt"]  # keep_last = 2
    run(tmp_path / "b", "train.steps=10", "train.keep_last=3")
    assert names(tmp_path / "b") == ["checkpoint.pt", "checkpoint.step_00000008.pt", "checkpoint.step_00000006.pt"]
    assert [load_checkpoint(p)["step"] for p in find_checkpoints(tmp_path / "b")] == [10, 8, 6]
    run(tmp_path / "c", "train.steps=10", "train.keep_last=1")
    assert names(tmp_path / "c") == ["checkpoint.pt"]
    assert not list(tmp_path.rglob("*.tmp"))
    with pytest.raises(ValueError, match="train.keep_last must be >= 1"):
        run(tmp_path / "d", "train.keep_last=0")


def test_a_fresh_run_replaces_an_old_runs_checkpoints(tmp_path):
    run(tmp_path, "train.steps=12", "train.keep_last=3")
    run(tmp_path, "train.steps=4")
    assert names(tmp_path) == ["checkpoint.pt", "checkpoint.step_00000002.pt"]  # none of the old run's 10, 8


@pytest.mark.parametrize(
    "damage, why",
    [
        (truncate, "truncated or not a torch.save file"),
        (lambda p: p.write_bytes(b""), "the file is empty"),
        (flip_middle, "fails its CRC-32 check"),
        (lambda p: p.write_bytes(b"not a checkpoint at all"), "truncated or not a torch.save file"),
    ],
    ids=["truncated", "empty", "bit-flips", "garbage"],
)
def test_damaged_newest_is_named_and_the_one_before_is_used(tmp_path, damage, why):
    whole = run(tmp_path / "whole", "train.steps=10")
    run(tmp_path / "r", "train.steps=10", stop_after=6)  # checkpoints at 6 (newest) and 4
    damage(tmp_path / "r" / "checkpoint.pt")
    assert why in checkpoint_problem(tmp_path / "r" / "checkpoint.pt")
    notes = []
    rest = run(tmp_path / "r", "train.steps=10", resume=True, note=notes.append)
    bad = tmp_path / "r" / "checkpoint.pt"
    assert notes[0].startswith(f"checkpoint {bad} is unusable: ") and why in notes[0], notes
    assert notes[1] == f"resuming from step 4 ({tmp_path / 'r' / 'checkpoint.step_00000004.pt'})"
    assert rest.losses == whole.losses  # the fallback continues exactly too
    assert names(tmp_path / "r") == ["checkpoint.pt", "checkpoint.step_00000008.pt"]  # the bad file is gone
    assert load_checkpoint(tmp_path / "r")["step"] == 10


def test_a_bad_file_asked_for_by_name_is_an_error_naming_it(tmp_path):
    run(tmp_path, "train.steps=4")
    f = tmp_path / "checkpoint.pt"
    truncate(f)
    with pytest.raises(CheckpointError, match=rf"^checkpoint {f} is unusable: it is truncated") as e:
        read_checkpoint(f)
    assert e.value.path == f and "\n" not in str(e.value)
    assert pickle.loads(pickle.dumps(e.value)).path == f  # crosses process pools whole
    with pytest.raises(CheckpointError, match="checkpoint .* is unusable: it is truncated"):
        run(tmp_path, "train.steps=6", resume=f)


def test_not_a_training_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "a.pt", {"model": {}})
    with pytest.raises(CheckpointError, match=r"not a training checkpoint \(no 'optimizer', 'scheduler'"):
        read_checkpoint(tmp_path / "a.pt", require=RESUME_KEYS)
    torch.save([1, 2], tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="holds a list"):
        read_checkpoint(tmp_path / "b.pt")


def test_every_checkpoint_bad_lists_them_all(tmp_path):
    run(tmp_path, "train.steps=4")
    for p in find_checkpoints(tmp_path):
        truncate(p)
    with pytest.raises(CheckpointError, match=r"no good checkpoint in it \(checkpoint.pt: .*; checkpoint.step_"):
        run(tmp_path, "train.steps=6", resume=True, note=lambda m: None)
    remove_checkpoints(tmp_path)
    assert find_checkpoints(tmp_path) == []


def test_partial_write_is_cleaned_at_start(tmp_path):
    run(tmp_path, "train.steps=2")
    left = tmp_path / "checkpoint.pt.abc123.tmp"  # what statetrack.atomic leaves when killed mid-write
    left.write_bytes(b"half")
    notes = []
    run(tmp_path, "train.steps=4", resume=True, note=notes.append)
    assert not left.exists() and any(f"removing the partial checkpoint {left}" in n for n in notes)


def test_eval_names_a_bad_file_in_one_line(tmp_path, capsys):
    real_run(tmp_path)
    f = tmp_path / "checkpoint.pt"
    flip_middle(f)
    with pytest.raises(SystemExit) as e:
        main(["eval", str(f), "--lengths", "5", "--samples", "4"])
    msg = str(e.value.code)
    assert msg.startswith(f"statetrack eval: checkpoint {f} is unusable: it is damaged") and "\n" not in msg
    # the run folder: the bad newest is named, the one before it evaluated
    assert main(["eval", str(tmp_path), "--lengths", "5", "--samples", "4", "--json"]) == 0
    captured = capsys.readouterr()
    assert f"checkpoint {f} is unusable" in captured.err and '"step": 2' in captured.out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{missing}"], "statetrack eval: no checkpoint at '{missing}'"),
        (["{run}", "--task", "nope"], "statetrack eval: unknown task 'nope'; valid tasks: parity"),
        (["{run}", "--lengths", "60-40"], "statetrack eval: --lengths 60-40: the range's low end must not exceed"),
        (["{run}", "--lengths", "forty"], "statetrack eval: --lengths must look like 40-256"),
    ],
    ids=["missing-checkpoint", "unknown-task", "reversed-lengths", "bad-lengths"],
)
def test_eval_errors_are_one_line(tmp_path, argv, message):
    real_run(tmp_path / "run", 2)
    where = {"missing": tmp_path / "nowhere.pt", "run": tmp_path / "run"}
    with pytest.raises(SystemExit) as e:
        main(["eval", *(a.format(**where) for a in argv)])
    msg = str(e.value.code)
    assert msg.startswith(message.format(**where)) and "\n" not in msg, msg
