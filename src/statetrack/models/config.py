"""ModelConfig: the fields every backbone shares, plus the mixer's own settings (its registered dataclass).

A config file's ``model`` section reads ``{mixer: deltanet, d_model: 128, n_layers: 2, settings: {n_heads: 4,
min_eigenvalue: -1.0}}``. Flat keys are a shorthand for settings (``model.min_eigenvalue=0`` on the command line)
and the form of every config written before the registry (one dataclass with every mixer's knobs): such a
section is mapped by :func:`upgrade_model_dict`, so old config files and checkpoints keep loading and build the
same models.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from statetrack.layers import MIXERS, MixerSettings, mixer_settings


@dataclass
class ModelConfig:
    """A backbone of ``n_layers`` pre-norm blocks x + mixer(norm(x)), x + mlp(norm(x)) between an embedding and
    a token-classification head.

    Attributes:
        mixer: a registered mixer (statetrack.layers.MIXERS: "deltanet", "gated_deltanet", "deltaproduct",
            "mamba", "diagonal_rnn", "full_matrix_rnn", "transformer", "lstm", "slstm", "mlstm").
        vocab_size: embedding rows and head outputs (the task's vocab_size); 0 = take it from the task.
        d_model, n_layers: width and depth.
        mlp_ratio: SwiGLU hidden = round8(2/3 * mlp_ratio * d_model); 0 = blocks without MLP.
        norm_eps: the blocks' RMSNorm epsilon.
        tie_embeddings: share the embedding and head weights.
        settings: the mixer's own settings, a dict of its Settings dataclass's fields (e.g.
            ``statetrack.layers.DeltaNetSettings``) or an instance of it; what is left out takes the defaults.
    """

    mixer: str = "deltanet"
    vocab_size: int = 0
    d_model: int = 128
    n_layers: int = 2
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6
    tie_embeddings: bool = False
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.settings, MixerSettings):
            want = MIXERS[self.mixer].Settings if self.mixer in MIXERS else type(self.settings)
            if type(self.settings) is not want:
                raise TypeError(f"model.settings: mixer {self.mixer!r} takes {want.__name__}, "
                                f"got {type(self.settings).__name__}")  # fmt: skip
            self.settings = self.settings.to_dict()
        elif isinstance(self.settings, Mapping):
            self.settings = dict(self.settings)  # plain python (OmegaConf hands back its own containers)
        else:
            raise TypeError(f"model.settings must be a dict or a MixerSettings, got {type(self.settings).__name__}")

    @property
    def mixer_settings(self) -> MixerSettings:
        """The checked settings dataclass of the mixer (defaults filled in)."""
        if self.mixer not in MIXERS:
            raise ValueError(f"model.mixer: unknown mixer {self.mixer!r}; choose one of {sorted(MIXERS)}")
        try:
            return mixer_settings(self.mixer, self.settings)
        except (TypeError, ValueError) as e:
            raise type(e)(f"model.settings: {e}") from None

    @property
    def min_eigenvalue(self) -> float | None:
        """The mixer's min_eigenvalue, None for mixers without one."""
        return getattr(self.mixer_settings, "min_eigenvalue", None)

    def validate(self, require_vocab: bool = True) -> ModelConfig:
        """Raise ValueError/TypeError naming the bad field; return self. ``require_vocab=False`` accepts
        vocab_size = 0 (to be set from the task)."""
        for name in ("d_model", "n_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.vocab_size < (1 if require_vocab else 0):
            raise ValueError(f"model.vocab_size must be >= 1 (set it, or let the task set it), got {self.vocab_size}")
        if self.mlp_ratio < 0:
            raise ValueError(f"model.mlp_ratio must be >= 0, got {self.mlp_ratio}")
        settings = self.mixer_settings
        try:
            settings.check(self.d_model)
        except (TypeError, ValueError) as e:
            raise type(e)(f"model: {e}") from None
        return self

    def to_dict(self) -> dict:
        """The shared fields and the mixer's full settings (defaults written out)."""
        return {**dataclasses.asdict(self), "settings": self.mixer_settings.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping) -> ModelConfig:
        """From :meth:`to_dict`'s form or the flat one of old configs (see :func:`upgrade_model_dict`)."""
        d = upgrade_model_dict(d)
        unknown = sorted(set(d) - SHARED)
        if unknown:  # pragma: no cover - upgrade_model_dict moves every other key into settings
            raise ValueError(f"model: unknown keys {unknown}; known: {sorted(SHARED)}")
        return cls(**d)


SHARED = frozenset(f.name for f in dataclasses.fields(ModelConfig))

# What the single flat ModelConfig before the registry handed each mixer: flat key -> setting (None: the value
# 0 meant "automatic" there and is None now). Keys a mixer did not take were ignored then, and are dropped.
_LEGACY_DELTA = {k: k for k in ("n_heads", "min_eigenvalue", "use_short_conv", "conv_size", "backend")}
LEGACY_KEYS: dict[str, dict[str, str]] = {
    "deltanet": {**_LEGACY_DELTA, "use_output_gate": "use_output_gate"},
    "gated_deltanet": _LEGACY_DELTA,
    "deltaproduct": {**_LEGACY_DELTA, "use_output_gate": "use_output_gate", "num_householder": "num_householder"},
    "mamba": {k: k for k in ("d_state", "min_eigenvalue", "expand", "dt_rank", "conv_size", "backend")},
    "diagonal_rnn": {"d_state": "d_state", "min_eigenvalue": "min_eigenvalue", "gate_scale": "gate_scale"},
    "full_matrix_rnn": {"full_matrix_n": "n"},
    "transformer": {"n_heads": "n_heads"},
    "lstm": {},
    "slstm": {"n_heads": "n_heads"},
    "mlstm": {"n_heads": "n_heads", "use_short_conv": "use_short_conv", "conv_size": "conv_size"},
}
# mixers the old config also handed its one norm_eps (their inner norms' epsilon is a setting of their own now)
_LEGACY_NORM_EPS = frozenset({"deltanet", "gated_deltanet", "deltaproduct", "slstm", "mlstm"})
# every flat key the old dataclass had beyond the shared ones
LEGACY_FLAT = frozenset().union(*LEGACY_KEYS.values())
_ZERO_MEANS_AUTO = {"d_state", "dt_rank"}


def upgrade_model_dict(d: Mapping) -> dict:
    """A ``model`` section in today's form: flat keys beyond the shared fields move into ``settings``.

    With ``mixer`` given and keys of the old flat config, those keys are mapped as that config mapped them to the
    mixer (renamed where the layer's name differs, 0 -> None where 0 meant automatic, the ones it ignored
    dropped), so a pre-registry file or checkpoint builds the same model. Any other flat key (a command-line
    shorthand such as ``model.min_eigenvalue=0``) moves into settings as it is and is checked there. A key given
    both flat and in ``settings`` raises.
    """
    d = dict(d)
    settings = dict(d.pop("settings", None) or {})
    flat = {k: d.pop(k) for k in list(d) if k not in SHARED}
    legacy = LEGACY_KEYS.get(d.get("mixer")) if set(flat) & LEGACY_FLAT else None
    if legacy is not None:
        moved = {}
        for k, v in flat.items():
            if k not in LEGACY_FLAT:
                moved[k] = v  # not an old key: checked against the mixer's settings like any other
            elif k in legacy:
                moved[legacy[k]] = None if (k in _ZERO_MEANS_AUTO and v == 0) else v
        if "norm_eps" in d and d["mixer"] in _LEGACY_NORM_EPS:
            moved.setdefault("norm_eps", d["norm_eps"])
        flat = moved
    both = sorted(set(flat) & set(settings))
    if both:
        raise ValueError(f"model: {both} given both as model.<key> and in model.settings; keep one")
    d["settings"] = {**settings, **flat}
    return d
