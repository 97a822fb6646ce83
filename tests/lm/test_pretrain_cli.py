"""`statetrack pretrain` as a person runs it: a real SIGTERM to the process (a checkpoint, one line, exit 143) and
a resume that continues the same losses; and bad input refused with one line naming it, before any step."""

import json
import signal
import subprocess
import sys
import time

import pytest

from statetrack.cli import main
from statetrack.lm.pretrain import pretrain
from statetrack.lm.pretrain_config import load_pretrain_config

from .pretrain_helpers import data_api, make_dataset, tiny_overrides, train_losses


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "ds")


class Crash(Exception):
    pass


def test_sigterm_to_the_process_checkpoints_and_resume_continues(dataset, tmp_path):
    out = tmp_path / "run"
    long = {"steps": 400, "ckpt_every": 0, "eval_every": 0}  # only the signal makes a checkpoint before the end
    cmd = [sys.executable, "-m", "statetrack", "pretrain", "tiny", *tiny_overrides(dataset, out, **long)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics, t0 = out / "metrics.jsonl", time.time()
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):
        assert p.poll() is None and time.time() - t0 < 120, p.communicate()
        time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, stderr
    lines = stderr.strip().splitlines()
    stopped = train_losses(out)
    n = max(stopped)
    ck = out / "checkpoints" / f"step_{n:08d}"
    assert lines[-1] == (f"statetrack pretrain: stopped by SIGTERM at step {n}; checkpoint saved to {ck}; "
                         "continue with --resume")  # fmt: skip
    assert "Traceback" not in stderr and n < 400

    def stop_at(k):
        def hook(step):
            if step == k:
                raise Crash

        return hook

    # the same run in this process, uninterrupted up to n + 2, and the stopped one resumed up to there
    def cfg(where):
        return load_pretrain_config("tiny", tiny_overrides(dataset, where, **long))

    ref = tmp_path / "ref"
    with pytest.raises(Crash):
        pretrain(cfg(ref), on_step=stop_at(n + 2), data_api=data_api())
    with pytest.raises(Crash):
        pretrain(cfg(out), resume=True, on_step=stop_at(n + 2), data_api=data_api())
    assert train_losses(out) == train_losses(ref) and max(train_losses(out)) == n + 1  # n + 2 crashed unlogged


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(["pretrain", "tiny", *args])
    msg = str(e.value.code)
    assert "\n" not in msg.strip()
    return msg


def test_bad_data_path(tmp_path, capsys):
    msg = run_cli(tiny_overrides(tmp_path / "nowhere", tmp_path / "run"), capsys)
    assert msg == f"statetrack pretrain: train.data: {str(tmp_path / 'nowhere')!r} does not exist (a folder of " \
                  "`statetrack data prepare`, or builtin:code / builtin:prose)"  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_empty_shard(tmp_path, capsys):
    data = make_dataset(tmp_path / "ds")
    shard = next((data / "train").glob("tokens-*.bin"))
    shard.write_bytes(b"")
    msg = run_cli(tiny_overrides(data, tmp_path / "run"), capsys)
    assert str(shard) in msg and "empty" in msg
    assert not (tmp_path / "run").exists()


def test_vocab_mismatch(dataset, tmp_path, capsys):
    msg = run_cli([*tiny_overrides(dataset, tmp_path / "run"), "model.vocab_size=32"], capsys)
    assert "vocab_size" in msg and "64 tokens" in msg and "vocab_size is 32" in msg
    assert not (tmp_path / "run").exists()


def test_seq_len_above_what_the_config_allows(dataset, tmp_path, capsys):
    msg = run_cli([*tiny_overrides(dataset, tmp_path / "run"), "model.max_position_embeddings=16"], capsys)
    assert msg == ("statetrack pretrain: train.seq_len = 32 is above model.max_position_embeddings = 16; lower "
                   "train.seq_len or raise the model's limit")  # fmt: skip


@pytest.mark.parametrize(
    ("override", "expect"),
    [
        ("train.stepz=3", "stepz"),
        ("train.amp=fp8", "train.amp must be one of 'auto', 'bf16', 'none'"),
        ("model.mixer=nope", "model: mixer: unknown mixer 'nope'"),
        ("model.hidden_size=-4", "model: hidden_size must be an int >= 1"),
    ],
)
def test_bad_config(dataset, tmp_path, capsys, override, expect):
    assert expect in run_cli([*tiny_overrides(dataset, tmp_path / "run"), override], capsys)


def test_overrides_and_flags_in_any_order(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    ov = tiny_overrides(dataset, tmp_path / "elsewhere", steps=2, ckpt_every=0, eval_every=0)
    assert main(["pretrain", "--no-progress", "tiny", ov[0], "--out", str(out), *ov[1:]]) == 0
    assert sorted(train_losses(out)) == [1, 2]
    assert "output in " + str(out) in capsys.readouterr().out
    assert json.loads((out / "invocations.jsonl").read_text())["world_size"] == 1
