"""The training loop: it learns, it resumes exactly, it checkpoints atomically, it rejects bad configs early."""

from __future__ import annotations

import json

import pytest
import torch

from statetrack.train import load_checkpoint, load_config, train
from statetrack.train.schedule import warmup_cosine

from .standin_task import TinyParity

BASE = [
    "model.mixer=diagonal_rnn", "model.d_model=16", "model.n_layers=1", "model.mlp_ratio=0",
    "train.batch_size=64", "train.lr=3e-3", "train.weight_decay=0.01", "train.log_every=5",
    "train.progress=false", "train.threads=1",
]  # fmt: skip


def cfg_for(tmp_path, *extra):
    return load_config(None, [*BASE, f"train.out_dir={tmp_path}", *extra])


def test_tiny_run_lowers_the_loss(tmp_path):
    res = train(cfg_for(tmp_path, "train.steps=60", "train.eval_every=30"), task=TinyParity())
    first, last = sum(res.losses[:5]) / 5, sum(res.losses[-5:]) / 5
    assert last < first - 0.1, (first, last)
    assert [h["step"] for h in res.history] == [30, 60]
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {x["kind"] for x in lines} == {"train", "eval"}
    assert all(k in lines[0] for k in ("step", "loss", "lr", "steps_per_s"))
    assert (tmp_path / "config.yaml").read_text().startswith("name:")


@pytest.mark.parametrize("mixer", ["deltanet", "transformer"])
def test_other_mixers_train(tmp_path, mixer):
    extra = [f"model.mixer={mixer}", "model.d_model=16", "model.n_heads=2", "model.mlp_ratio=2", "train.steps=4",
             "train.batch_size=8", "train.grad_clip=1.0"]  # fmt: skip
    res = train(cfg_for(tmp_path, *extra), task=TinyParity(), write_files=False)
    assert res.step == 4 and all(torch.isfinite(torch.tensor(res.losses)))


def test_resume_equals_uninterrupted(tmp_path):
    extra = ("train.steps=24", "train.eval_every=8", "train.ckpt_every=4", "train.grad_clip=0.5")
    whole = train(cfg_for(tmp_path / "a", *extra), task=TinyParity())
    part = train(cfg_for(tmp_path / "b", *extra), task=TinyParity(), stop_after=10)  # checkpoint at 10
    assert part.step == 10 and len(part.losses) == 10
    rest = train(cfg_for(tmp_path / "b", *extra), task=TinyParity(), resume=True)
    assert rest.step == 24
    assert rest.losses == whole.losses  # bit-for-bit: same batches, same optimiser and scheduler state
    assert rest.history == whole.history
    for k, v in whole.model.state_dict().items():
        assert torch.equal(v, rest.model.state_dict()[k]), k
    # the metrics log of the resumed run has no duplicated steps
    steps = [json.loads(x)["step"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["kind"] == "train"]  # fmt: skip
    assert steps == sorted(set(steps)) and steps[-1] == 24


def test_prefetching_batches_changes_nothing(tmp_path):
    a = train(cfg_for(tmp_path, "train.steps=8", "train.prefetch=0"), task=TinyParity(), write_files=False)
    b = train(cfg_for(tmp_path, "train.steps=8", "train.prefetch=2"), task=TinyParity(), write_files=False)
    assert a.losses == b.losses


def test_checkpoint_contents_and_atomic_write(tmp_path):
    train(cfg_for(tmp_path, "train.steps=6", "train.ckpt_every=3"), task=TinyParity())
    ck = load_checkpoint(tmp_path)
    assert {"model", "optimizer", "scheduler", "rng", "step", "config"} <= set(ck)
    assert ck["step"] == 6 and ck["config"]["model"]["mixer"] == "diagonal_rnn"
    assert not list(tmp_path.glob("*.tmp")), "temporary checkpoint left behind"


def test_schedule_warmup_then_cosine_to_min():
    lrs = [warmup_cosine(s, 100, 10, 1e-3, 1e-5) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lrs[-1] == pytest.approx(1e-5)


@pytest.mark.parametrize(
    "override, match",
    [
        ("model.mixer=transformr", "unknown mixer 'transformr'"),
        ("model.n_heads=3", "n_heads = 3 must divide d_model = 16"),
        ("model.min_eigenvalue=0.5", "min_eigenvalue must lie in \\[-1, 0\\]"),
        ("model.min_eigenvalue=-2", "min_eigenvalue must lie in \\[-1, 0\\]"),
        ("train.lr=-1", "train.lr must be >= 0"),
    ],
)
def test_bad_configs_fail_at_start(tmp_path, override, match):
    class Exploding(TinyParity):
        def sample(self, *a, **k):  # pragma: no cover - must never be reached
            raise AssertionError("a bad config got as far as sampling data")

    with pytest.raises(ValueError, match=match):  # when the config is read (mixer settings) or the run starts
        train(cfg_for(tmp_path, "model.mixer=deltanet", override), task=Exploding())


def test_unknown_config_key_and_type():
    with pytest.raises(ValueError, match="mixr"):
        load_config(None, ["model.mixr=deltanet"])
    with pytest.raises(ValueError, match="d_model"):
        load_config(None, ["model.d_model=wide"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["model.d_model"])


def test_resume_refuses_another_model(tmp_path):
    train(cfg_for(tmp_path, "train.steps=2"), task=TinyParity())
    with pytest.raises(ValueError, match="cannot resume"):
        train(cfg_for(tmp_path, "train.steps=4", "model.d_model=8"), task=TinyParity(), resume=True)


def test_bf16_autocast_on_cpu(tmp_path):
    res = train(cfg_for(tmp_path, "train.steps=3", "train.amp=bf16"), task=TinyParity(), write_files=False)
    assert res.step == 3 and all(v == v for v in res.losses)


@pytest.mark.parametrize(
    "setting, first, later",
    [("auto", None, None), ("on", True, True), ("first_step", True, False), ("off", False, False)],
)
def test_value_checks_setting(tmp_path, setting, first, later):
    """train.value_checks: the ops' checks seen while the batch of each step is drawn (in the trainer's thread
    with prefetch 0). On the CPU "auto" leaves the process default in charge."""
    from statetrack.ops._checks import value_checks_enabled

    default = value_checks_enabled()
    seen = []

    class Recording(TinyParity):
        def sample(self, batch_size, generator=None, lengths=None):
            if lengths is None:  # a training batch (the evaluation set passes its lengths)
                seen.append(value_checks_enabled())
            return super().sample(batch_size, generator, lengths)

    cfg = cfg_for(tmp_path, "train.steps=3", "train.prefetch=0", f"train.value_checks={setting}")
    train(cfg, task=Recording(), write_files=False)
    first, later = (default if first is None else first), (default if later is None else later)
    assert seen == [first, later, later]
    assert value_checks_enabled() == default  # restored after the run


def test_value_checks_setting_is_checked(tmp_path):
    from statetrack.train.device import value_check_phases

    with pytest.raises(ValueError, match="train.value_checks must be 'auto', 'on', 'first_step' or 'off'"):
        load_config(None, ["train.value_checks=sometimes"]).train.validate()
    tc = load_config(None, ["train.value_checks=on"]).train.validate()
    with pytest.raises(ValueError, match="train.value_checks = 'on' cannot apply to a CUDA-graphed step"):
        value_check_phases(tc.value_checks, torch.device("cuda"), graphed=True)
    assert value_check_phases(tc.value_checks, torch.device("cuda"), graphed=False) == (True, True)
    auto = load_config(None, []).train.validate()
    # as before the setting
    assert value_check_phases(auto.value_checks, torch.device("cuda"), graphed=True) == (None, False)
    assert value_check_phases(auto.value_checks, torch.device("cpu"), graphed=False) == (None, None)
    assert load_config(None, ["train.value_checks=off"]).train.validate().value_checks == "off"  # YAML bool
