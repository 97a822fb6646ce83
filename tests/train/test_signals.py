"""`statetrack train` stopped by a real signal (SIGINT, SIGTERM: a checkpoint, one line, exit 128 + signal; kill -9:
the last checkpoint), then resumed: the metrics log equals an uninterrupted run's, step for step."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from statetrack.cli import main
from statetrack.train import load_config, train

CONFIG = """name: sig
model: {mixer: diagonal_rnn, d_model: 8, n_layers: 1, mlp_ratio: 0}
train: {task: parity, steps: 100000, batch_size: 16, train_lengths: [3, 12], lr: 3.0e-3, warmup_steps: 10,
        log_every: 3, ckpt_every: 5, eval_every: 0, eval_samples: 8, threads: 1, prefetch: 0, progress: false,
        device: cpu}
"""
CONTINUE = 7  # steps the resumed run and the reference go past the stop


def _train_lines(path):
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    return [{k: r[k] for k in ("step", "loss", "token_accuracy", "lr")} for r in recs if r["kind"] == "train"]


def _wait_for_step(proc, metrics, step, timeout=60.0):
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        assert proc.poll() is None, proc.communicate()
        if metrics.is_file() and any(json.loads(x)["step"] >= step for x in metrics.read_text().splitlines()[-3:]):
            return
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"the run did not reach step {step}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_signal_then_resume_continues_exactly(tmp_path, sig, capsys):
    cfg_file = tmp_path / "sig.yaml"
    cfg_file.write_text(CONFIG)
    out = tmp_path / "a"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "statetrack", "train", str(cfg_file), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    _wait_for_step(proc, out / "metrics.jsonl", 12)  # past the checkpoints at 5 and 10
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 128 + sig, (stdout, stderr)
        assert "Traceback" not in stderr and stdout == ""
        (line,) = stderr.strip().splitlines()
        m = re.fullmatch(rf"statetrack train: stopped by {sig.name} at step (\d+); checkpoint saved to (\S+); "
                         r"continue with --resume", line)  # fmt: skip
        assert m, line
        assert m[2] == str(out / "checkpoint.pt")
    # a stop between log lines writes none: the log stays the one an uninterrupted run writes
    last_logged = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    stopped = last_logged if sig == signal.SIGKILL else int(m[1])
    assert last_logged % 3 == 0 or last_logged % 5 == 0  # a log or checkpoint step

    end = stopped + CONTINUE
    capsys.readouterr()
    rest = train(load_config(cfg_file, [f"train.out_dir={out}"]), resume=True, stop_after=end)
    resumed_at = end - rest.steps_run
    if sig != signal.SIGKILL:
        assert resumed_at == int(m[1])  # the signal's checkpoint is the step it reported
    else:
        assert resumed_at % 5 == 0 and resumed_at >= 10  # the last periodic checkpoint
    assert f"resuming from step {resumed_at} ({out / 'checkpoint.pt'})" in capsys.readouterr().err

    whole = train(load_config(cfg_file, [f"train.out_dir={tmp_path / 'b'}"]), stop_after=end)
    assert rest.losses == whole.losses and len(rest.losses) == end  # every step's loss, bit for bit
    assert _train_lines(out / "metrics.jsonl") == _train_lines(tmp_path / "b" / "metrics.jsonl")


def test_stop_inside_the_loop_saves_and_raises(tmp_path):
    """The library's side: a signal during a step ends it, writes the checkpoint of that step, raises
    TrainingStopped (a KeyboardInterrupt) with the one line, and puts the old handlers back."""
    from statetrack.train import TrainingStopped, load_checkpoint

    cfg = load_config(None, ["model.mixer=diagonal_rnn", "model.d_model=8", "model.n_layers=1", "model.mlp_ratio=0",
                             "train.steps=50", "train.batch_size=4", "train.log_every=10", "train.threads=1",
                             "train.progress=false", f"train.out_dir={tmp_path}"])  # fmt: skip
    before = signal.getsignal(signal.SIGINT)

    def on_step_7(step, res):
        if step == 7:
            os.kill(os.getpid(), signal.SIGINT)

    cfg.train.eval_every, cfg.train.eval_samples = 1, 4  # on_eval runs at every step: a hook to send the signal
    with pytest.raises(TrainingStopped) as e:
        train(cfg, on_eval=on_step_7, handle_signals=True)
    assert isinstance(e.value, KeyboardInterrupt) and e.value.exit_code == 130
    assert str(e.value) == f"stopped by SIGINT at step 7; checkpoint saved to {tmp_path / 'checkpoint.pt'}; " \
                           "continue with --resume"  # fmt: skip
    ck = load_checkpoint(tmp_path)
    assert ck["step"] == 7 and len(ck["losses"]) == 7
    assert signal.getsignal(signal.SIGINT) is before


def test_without_handle_signals_a_signal_is_the_callers(tmp_path):
    """The default for library callers (the reproduce sweep's workers): the handlers stay as they are."""
    cfg = load_config(None, ["model.mixer=diagonal_rnn", "model.d_model=8", "model.n_layers=1", "train.steps=20",
                             "train.batch_size=4", "train.threads=1", "train.progress=false", "train.eval_every=1",
                             "train.eval_samples=4", f"train.out_dir={tmp_path}"])  # fmt: skip

    def on_step_3(step, res):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt) as e:
        train(cfg, on_eval=on_step_3)
    assert type(e.value) is KeyboardInterrupt  # Python's own, raised at once: not a TrainingStopped


def test_resumed_run_reports_where_and_counts_its_own_steps(tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("name: rate\nmodel: {mixer: diagonal_rnn, d_model: 8, n_layers: 1, mlp_ratio: 0}\n"
                   "train: {task: parity, steps: 6, batch_size: 4, eval_samples: 4, threads: 1}\n")  # fmt: skip
    out = tmp_path / "run"
    args = ["train", str(cfg), "--out", str(out), "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    first = capsys.readouterr()
    assert re.search(r"rate: 6 steps in [\d.]+ s \([\d.]+ steps/s\), step 6 of 6", first.out), first.out
    assert main([*args, "--resume", "train.steps=10"]) == 0
    again = capsys.readouterr()
    assert f"resuming from step 6 ({out / 'checkpoint.pt'})" in again.err
    assert re.search(r"rate: 4 steps in [\d.]+ s \([\d.]+ steps/s\), step 10 of 10", again.out), again.out
    assert main([*args, "--resume", "train.steps=10"]) == 0  # a finished run: nothing to do, still reported
    assert "rate: 0 steps" in capsys.readouterr().out


def test_resume_without_a_checkpoint_starts_from_zero(tmp_path, capsys):
    cfg = load_config(None, ["model.mixer=diagonal_rnn", "model.d_model=8", "model.n_layers=1", "train.steps=2",
                             "train.batch_size=4", "train.progress=false", f"train.out_dir={tmp_path / 'new'}",
                             "train.threads=1"])  # fmt: skip
    res = train(cfg, resume=True)
    assert res.step == 2 and res.resumed_from is None
    assert f"no checkpoint in {tmp_path / 'new'}: starting from step 0" in capsys.readouterr().err
