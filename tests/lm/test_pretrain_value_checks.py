"""train.value_checks of ``statetrack pretrain``: when the ops' value-range checks (a host sync per op) run."""

from __future__ import annotations

import pytest
import torch

from statetrack.lm.pretrain import pretrain
from statetrack.models import causal_lm
from statetrack.ops._checks import value_checks_enabled

from .pretrain_helpers import data_api, make_dataset, tiny_config


@pytest.mark.parametrize("setting,expect", [("first_step", [True, False, False]), ("off", [False] * 3),
                                            ("on", [True] * 3), ("auto", [True] * 3)])  # fmt: skip
def test_value_checks_per_step(tmp_path, monkeypatch, setting, expect):
    """The checks each training step's forward runs under: "first_step" only in the process's first step, "on" in all,
    "off" in none; "auto" on the CPU is the process default (on) throughout (on CUDA it is "first_step");
    the setting is restored after the run."""
    seen = []
    forward = causal_lm.StateTrackForCausalLM.forward

    def recording(self, *a, **k):
        if torch.is_grad_enabled():  # training steps (the held-out loss runs under no_grad)
            seen.append(value_checks_enabled())
        return forward(self, *a, **k)

    monkeypatch.setattr(causal_lm.StateTrackForCausalLM, "forward", recording)
    data = make_dataset(tmp_path / "ds", n_docs=40)
    cfg = tiny_config(data, tmp_path / "run", steps=3, warmup_steps=1, ckpt_every=0, eval_every=0,
                      value_checks=setting)  # fmt: skip
    pretrain(cfg, data_api=data_api())
    assert seen == expect
    assert value_checks_enabled()


def test_value_checks_setting_is_checked(tmp_path):
    with pytest.raises(ValueError, match="value_checks.*must be one of 'auto', 'on', 'first_step', 'off'"):
        tiny_config(make_dataset(tmp_path / "ds", n_docs=40), tmp_path / "run", value_checks="sometimes").validate()
