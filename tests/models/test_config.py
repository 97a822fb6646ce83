"""ModelConfig: shared fields plus the mixer's own settings; old flat configs and checkpoints map onto it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from statetrack.layers import MIXERS, DeltaNetSettings
from statetrack.models import ModelConfig, TokenClassifier, upgrade_model_dict
from statetrack.train import load_config

ROOT = Path(__file__).resolve().parents[2]
LEGACY = sorted((Path(__file__).parent / "legacy_configs").glob("*.yaml"))

# ModelConfig as it was before the registry: every mixer's knobs in one flat dataclass (what old checkpoints hold)
OLD_DEFAULTS = dict(vocab_size=5, d_model=16, n_layers=1, n_heads=4, min_eigenvalue=-1.0, mlp_ratio=4.0, norm_eps=1e-6,
                    use_short_conv=True, conv_size=4, num_householder=2, use_output_gate=False, d_state=16, expand=2,
                    dt_rank=0, gate_scale=10.0, full_matrix_n=32, backend="auto", tie_embeddings=False)  # fmt: skip


@pytest.mark.parametrize("path", LEGACY, ids=lambda p: p.stem)
def test_old_config_files_build_the_same_model_as_the_new_ones(path):
    old = yaml.safe_load(path.read_text())["model"]
    new = yaml.safe_load((ROOT / "configs" / path.name).read_text())["model"]
    assert any(k not in new for k in old), "the fixture should be in the old flat form"
    a, b = ModelConfig.from_dict({**old, "vocab_size": 5}), ModelConfig.from_dict({**new, "vocab_size": 5})
    assert a.to_dict() == b.to_dict()
    torch.manual_seed(0)
    sa = TokenClassifier(a).state_dict()
    torch.manual_seed(0)
    sb = TokenClassifier(b).state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    # and through load_config, as `statetrack train` reads them
    assert load_config(path).model.to_dict() == load_config(ROOT / "configs" / path.name).model.to_dict()


@pytest.mark.parametrize("mixer", list(MIXERS))
def test_an_old_checkpoints_union_config_builds_what_it_built(mixer):
    cfg = ModelConfig.from_dict({**OLD_DEFAULTS, "mixer": mixer})
    block = TokenClassifier(cfg).blocks[0].mixer
    expect = {  # what the old if-chain handed each layer from these defaults
        "deltanet": dict(n_h=1, use_gate=False, use_output_gate=False),
        "gated_deltanet": dict(n_h=1, use_gate=True, use_output_gate=True),
        "deltaproduct": dict(n_h=2, use_gate=False, use_output_gate=False),
        "diagonal_rnn": dict(d_state=16),
        "mamba": dict(d_state=16, dt_rank=1, d_inner=32),
        "full_matrix_rnn": dict(n=32),
    }.get(mixer, {})
    assert {k: getattr(block, k) for k in expect} == expect
    assert set(cfg.settings) <= set(block.Settings.names())


def test_legacy_zero_means_automatic_and_renames():
    cfg = ModelConfig.from_dict({**OLD_DEFAULTS, "mixer": "diagonal_rnn", "d_state": 0})
    assert cfg.settings["d_state"] is None and TokenClassifier(cfg).blocks[0].mixer.d_state == 16
    cfg = ModelConfig.from_dict({**OLD_DEFAULTS, "mixer": "full_matrix_rnn", "full_matrix_n": 4})
    assert cfg.settings["n"] == 4


def test_flat_keys_are_a_shorthand_for_settings_on_the_command_line():
    cfg = load_config(ROOT / "configs" / "parity_deltanet.yaml", ["model.min_eigenvalue=0", "model.n_heads=2"])
    assert cfg.model.settings["min_eigenvalue"] == 0 and cfg.model.mixer_settings.n_heads == 2
    cfg = load_config(ROOT / "configs" / "parity_deltanet.yaml", ["model.settings.min_eigenvalue=-0.5"])
    assert cfg.model.min_eigenvalue == -0.5


def test_settings_of_another_mixer_fail_naming_the_mixer():
    with pytest.raises(ValueError, match="mixer 'mamba' has no setting 'n_heads'"):
        load_config(ROOT / "configs" / "parity_mamba.yaml", ["model.n_heads=2"])
    with pytest.raises(ValueError, match="mixer 'lstm' has no setting 'min_eigenvalue'"):
        ModelConfig(mixer="lstm", vocab_size=3, settings={"min_eigenvalue": 0.0}).validate()


def test_a_key_given_twice_fails():
    with pytest.raises(ValueError, match="both"):
        upgrade_model_dict({"mixer": "deltanet", "n_heads": 2, "settings": {"n_heads": 4}})


def test_settings_may_be_the_dataclass_and_round_trip():
    cfg = ModelConfig(mixer="deltanet", vocab_size=3, d_model=16, settings=DeltaNetSettings(n_heads=2))
    again = ModelConfig.from_dict(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict() and again.mixer_settings == DeltaNetSettings(n_heads=2)
    assert dataclasses.asdict(again.mixer_settings) == cfg.to_dict()["settings"]
    with pytest.raises(TypeError, match="model.settings"):
        ModelConfig(mixer="deltanet", settings=[("n_heads", 2)])
    with pytest.raises(TypeError, match="mixer 'mamba' takes MambaSettings, got DeltaNetSettings"):
        ModelConfig(mixer="mamba", vocab_size=3, settings=DeltaNetSettings())
