"""The one registry of token mixers: each layer class declares its settings (a dataclass) and registers itself
once with :func:`register_mixer`; models, configs and the command line find mixers only through here.

A mixer is built from the model width and its settings: ``build_mixer("deltanet", 128, {"n_heads": 4})``.
Settings are plain dataclasses (``DeltaNet.Settings``), checked when made: a bad value names its field, an
unknown key names the mixer and lists its settings.
"""

from __future__ import annotations

from torch import nn

from .base import MixerSettings, make_settings

# name -> the registered nn.Module class (its ``Settings`` attribute is the settings dataclass)
MIXERS: dict[str, type[nn.Module]] = {}


def register_mixer(name: str, settings: type[MixerSettings]):
    """Class decorator: ``@register_mixer("deltanet", DeltaNetSettings)`` on a Mixer subclass, which then builds
    from those settings (``Cls.Settings``) and is found by ``name``."""

    def add(cls):
        if name in MIXERS:
            raise ValueError(f"mixer {name!r} is registered twice ({MIXERS[name].__name__}, {cls.__name__})")
        if not (isinstance(settings, type) and issubclass(settings, MixerSettings)):
            raise TypeError(f"mixer {name!r}: its settings must be a MixerSettings dataclass, got {settings!r}")
        cls.Settings, cls.mixer_name = settings, name
        settings.owner = f"mixer {name!r}"
        MIXERS[name] = cls
        return cls

    return add


def get_mixer_class(name: str) -> type[nn.Module]:
    """The Mixer class registered under ``name``."""
    if name not in MIXERS:
        raise ValueError(f"unknown mixer {name!r}; choose one of {sorted(MIXERS)}")
    return MIXERS[name]


def mixer_settings(name: str, settings: MixerSettings | dict | None = None) -> MixerSettings:
    """The checked settings of mixer ``name`` (defaults for what ``settings`` leaves out)."""
    return make_settings(get_mixer_class(name).Settings, settings)


def build_mixer(name: str, d_model: int, settings: MixerSettings | dict | None = None) -> nn.Module:
    """A mixer of width ``d_model``: ``get_mixer_class(name)(d_model, settings)`` (the layer checks them)."""
    return get_mixer_class(name)(d_model, settings)
