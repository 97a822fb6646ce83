"""The mixer registry: every mixer registered once with a settings dataclass; settings are checked when made."""

from __future__ import annotations

import dataclasses

import pytest

from statetrack.layers import MIXERS, Mixer, MixerSettings, build_mixer, get_mixer_class, mixer_settings


@pytest.mark.parametrize("name", list(MIXERS))
def test_every_mixer_declares_settings_and_builds_from_them(name):
    cls = get_mixer_class(name)
    assert issubclass(cls, Mixer) and cls.mixer_name == name
    assert dataclasses.is_dataclass(cls.Settings) and issubclass(cls.Settings, MixerSettings)
    assert cls.Settings.owner == f"mixer {name!r}"
    m = build_mixer(name, 16, {"n_heads": 2} if "n_heads" in cls.Settings.names() else None)
    assert isinstance(m, cls) and isinstance(m.settings, cls.Settings) and m.d_model == 16
    # keyword overrides and a settings instance build the same thing
    assert cls(16, m.settings).settings == m.settings


def test_settings_classes_are_not_shared_between_mixers():
    assert len({c.Settings for c in MIXERS.values()}) == len(MIXERS)


def test_unknown_settings_name_the_mixer_and_list_its_settings():
    with pytest.raises(ValueError, match=r"mixer 'transformer' has no setting 'd_state'; its settings: \['n_heads'"):
        mixer_settings("transformer", {"d_state": 4})
    with pytest.raises(ValueError, match="unknown mixer 'deltanett'"):
        build_mixer("deltanett", 16)


@pytest.mark.parametrize(
    "name, settings, match",
    [
        ("deltanet", {"n_heads": 0}, "n_heads must be an int >= 1"),
        ("deltaproduct", {"num_householder": 0}, "num_householder must be an int >= 1"),
        ("mamba", {"d_state": 2.5}, "d_state must be an int >= 1"),
        ("mamba", {"min_eigenvalue": 0.5}, "min_eigenvalue must lie in"),
        ("full_matrix_rnn", {"n": -1}, "n must be an int >= 1"),
        ("mlstm", {"conv_size": 0}, "conv_size must be an int >= 1"),
    ],
)
def test_bad_settings_fail_naming_the_field(name, settings, match):
    with pytest.raises(ValueError, match=match):
        mixer_settings(name, settings)


def test_bad_width_and_settings_type():
    with pytest.raises(ValueError, match="d_model must be an int >= 1"):
        build_mixer("lstm", 0)
    with pytest.raises(TypeError, match="settings must be"):
        get_mixer_class("lstm")(8, settings=3)
