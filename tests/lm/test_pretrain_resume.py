"""Pretraining in one process: exact resume after SIGTERM and after a crash between checkpoints, corrupt and
partial checkpoints skipped (named), the last K kept, the run folder's outputs."""

import json
import os
import signal

import pytest

from statetrack.lm.checkpoint import MARKER, list_checkpoints
from statetrack.lm.pretrain import pretrain

from .pretrain_helpers import data_api, make_dataset, tiny_config, train_losses


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "ds")


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    res = pretrain(tiny_config(dataset, out), data_api=data_api())
    return out, res


class Crash(Exception):
    pass


def crash_at(n):
    def hook(step):
        if step == n:
            raise Crash(f"simulated kill -9 at step {n}")

    return hook


def test_uninterrupted_run_leaves_its_files(reference):
    out, res = reference
    assert res.step == 8 and res.stopped_by is None and len(res.losses) == 8
    assert sorted(train_losses(out)) == list(range(1, 9))
    assert res.losses == list(train_losses(out).values())
    for name in ("config.yaml", "invocations.jsonl", "loss.png", "metrics.jsonl", "tensorboard"):
        assert (out / name).exists(), name
    inv = json.loads((out / "invocations.jsonl").read_text().splitlines()[0])
    assert inv["versions"]["torch"] and inv["world_size"] == 1 and "git" in inv
    evals = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if '"eval"' in ln]
    assert [e["step"] for e in evals] == [4, 8]
    # ckpt_every = 3 and the end, keep_last = 2
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [8, 6]
    assert res.checkpoint == out / "checkpoints" / "step_00000008"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_then_resume_is_exact(dataset, reference, tmp_path, capsys, sig):
    out = tmp_path / "run"
    cfg = tiny_config(dataset, out)

    def term(step):
        if step == 4:
            os.kill(os.getpid(), sig)

    first = pretrain(cfg, on_step=term, data_api=data_api())
    assert first.stopped_by == sig.name and first.step == 4
    assert first.checkpoint == out / "checkpoints" / "step_00000004" and (first.checkpoint / MARKER).is_file()
    second = pretrain(tiny_config(dataset, out), resume=True, data_api=data_api())
    assert second.resumed_from == first.checkpoint and second.steps_run == 4
    assert "resuming from step 4" in capsys.readouterr().err
    assert train_losses(out) == train_losses(reference[0])


@pytest.mark.parametrize("background", ["off", "on"])
def test_crash_between_checkpoints_loses_at_most_ckpt_every(dataset, reference, tmp_path, background):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        cfg = tiny_config(dataset, out, async_checkpoint=background)
        pretrain(cfg, on_step=crash_at(5), data_api=data_api())
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [3]
    res = pretrain(tiny_config(dataset, out, async_checkpoint=background), resume=True, data_api=data_api())
    assert res.steps_run == 5
    assert train_losses(out) == train_losses(reference[0])


@pytest.mark.parametrize("damage", ["truncate", "garble", "unmark"])
def test_bad_checkpoint_is_named_and_the_previous_one_used(dataset, reference, tmp_path, capsys, damage):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        pretrain(tiny_config(dataset, out, keep_last=3), on_step=crash_at(7), data_api=data_api())
    bad = out / "checkpoints" / "step_00000006"
    if damage == "truncate":  # a shard cut short: its size differs from the marker's
        shard = next(bad.glob("*.distcp"))
        shard.write_bytes(shard.read_bytes()[:100])
    elif damage == "garble":  # same size, unreadable: found when it is loaded
        meta = bad / ".metadata"
        meta.write_bytes(b"\0" * meta.stat().st_size)
    else:  # no completion marker: a checkpoint cut off while being written
        (bad / MARKER).unlink()
    partial = out / "checkpoints" / ".step_00000007.partial"
    partial.mkdir()  # left by a crash mid-save
    res = pretrain(tiny_config(dataset, out, keep_last=3), resume=True, data_api=data_api())
    err = capsys.readouterr().err
    assert f"checkpoint {bad} is unusable" in err
    assert res.resumed_from == out / "checkpoints" / "step_00000003"
    assert not partial.exists()
    assert train_losses(out) == train_losses(reference[0])
