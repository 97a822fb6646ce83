"""``train.deterministic`` on the CPU: one key trained twice, in this process (with and without prefetch threads)
and in a fresh process, logs bitwise the same loss at every step; the mode is scoped to the run; settings
that cannot be deterministic are refused; a failed CUDA-graph capture is not replaced by an eager step.
The same on a GPU, alone and with two runs sharing it: tests/train/test_determinism_gpu.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest
import torch

from statetrack.train import autocast_factory, build_step, graphed, load_config, masked_cross_entropy, train
from statetrack.train.determinism import CUBLAS_ENV, deterministic

from .standin_task import TinyParity
from .test_train import cfg_for

TABLE3_MIXERS = ["deltanet", "mamba", "mlstm", "slstm", "transformer"]


def _cfg(tmp_path, mixer, *extra):
    return cfg_for(tmp_path, f"model.mixer={mixer}", "model.d_model=16", "model.n_heads=2", "model.mlp_ratio=2",
                   "train.steps=6", "train.batch_size=8", "train.grad_clip=1.0", "train.deterministic=true",
                   *extra)  # fmt: skip


def _bits(losses) -> list[str]:
    return [float(v).hex() for v in losses]


@pytest.mark.parametrize("mixer", TABLE3_MIXERS)
def test_one_key_twice_gives_the_same_losses_bitwise(tmp_path, mixer):
    a = train(_cfg(tmp_path, mixer, "train.prefetch=0"), task=TinyParity(), write_files=False)
    b = train(_cfg(tmp_path, mixer, "train.prefetch=2"), task=TinyParity(), write_files=False)  # not in the key
    assert len(a.losses) == 6 and _bits(a.losses) == _bits(b.losses)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    assert not torch.are_deterministic_algorithms_enabled()  # the mode ended with the run


# one key of a real task, trained in a fresh process; prints every step's loss as float.hex
_SCRIPT = """
import json, sys
from statetrack.train import load_config, train
cfg = load_config(None, sys.argv[1:])
print(json.dumps([v.hex() for v in train(cfg, write_files=False).losses]))
"""
_KEY = ["model.mixer=mamba", "model.d_model=16", "model.n_layers=2", "model.mlp_ratio=0", "train.task=parity",
        "train.train_lengths=[3,20]", "train.steps=8", "train.batch_size=16", "train.lr=3e-3", "train.grad_clip=1.0",
        "train.eval_samples=8", "train.eval_every=0", "train.threads=1", "train.prefetch=2", "train.device=cpu",
        "train.progress=false", "train.deterministic=true"]  # fmt: skip


def test_one_key_in_another_process_gives_the_same_losses_bitwise():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, *_KEY, "train.prefetch=0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    here = train(load_config(None, _KEY), write_files=False)  # meanwhile, in this process (2 prefetch threads)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    there = json.loads(out.strip().splitlines()[-1])
    assert len(there) == 8 and _bits(here.losses) == there


def test_the_mode_is_scoped_and_sets_the_cublas_workspace(monkeypatch):
    monkeypatch.delenv(CUBLAS_ENV, raising=False)
    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    with deterministic():
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
        assert os.environ[CUBLAS_ENV] == ":4096:8"
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before
    monkeypatch.setenv(CUBLAS_ENV, ":16:8")
    with deterministic():
        assert os.environ[CUBLAS_ENV] == ":16:8"  # a caller's own setting is kept
    with deterministic(False):
        assert not torch.are_deterministic_algorithms_enabled()


def test_settings_that_cannot_be_deterministic_are_refused(tmp_path):
    cfg = _cfg(tmp_path, "deltanet", "model.settings.backend=fla")
    with pytest.raises(ValueError, match=r"train.deterministic.*backend = 'fla'.*timing"):
        train(cfg, task=TinyParity(), write_files=False)
    with pytest.raises(ValueError, match="train.deterministic"):
        load_config(None, ["train.deterministic=maybe"])


def test_a_failed_graph_capture_raises_instead_of_training_eagerly(monkeypatch):
    def capture_fails(*a, **k):
        raise torch.OutOfMemoryError("no room for the graph")

    monkeypatch.setattr(graphed, "GraphedStep", capture_fails)
    monkeypatch.setattr(graphed, "snapshot", lambda model, opt: None)
    monkeypatch.setattr(graphed, "restore", lambda model, opt, saved: None)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    args = (model, model, opt, masked_cross_entropy, 0.0, autocast_factory("cpu", False, False))
    example = (torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(torch.OutOfMemoryError):  # the error itself: the sweep requeues out-of-memory runs
        build_step(*args, example=example, eager_fallback=False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert callable(build_step(*args, example=example))  # the default: warn, train eagerly
    assert any("training eagerly" in str(x.message) for x in w)


def test_the_sweep_trains_deterministically_unless_told_not_to(tmp_path, monkeypatch):
    from statetrack.cli import build_parser
    from statetrack.commands.reproduce import command_line
    from statetrack.reproduce import build_runs, get_budget
    from statetrack.reproduce import worker as worker_mod
    from statetrack.reproduce.runner import _job

    seen = []
    monkeypatch.setattr(worker_mod, "train", lambda cfg, **k: seen.append(cfg.train.deterministic) or 1 / 0)
    run = build_runs("figure1", get_budget("figure1", "smoke"))[0]
    jobs = [_job(run, tmp_path, "figure1", False), _job(run, tmp_path, "figure1", False, deterministic=False)]
    for job in jobs:
        with pytest.raises(ZeroDivisionError):  # the stand-in trainer stops the job once it has seen the config
            worker_mod.execute({**job, "device": "cpu"})
    assert seen == [True, False] and jobs[0]["key"] == jobs[1]["key"]  # on by default; not part of the key
    args = build_parser().parse_args(["reproduce", "table3", "--out", "o", "--no-deterministic"])
    assert args.no_deterministic and "--no-deterministic" in command_line(args)
    assert not build_parser().parse_args(["reproduce", "table3", "--out", "o"]).no_deterministic
