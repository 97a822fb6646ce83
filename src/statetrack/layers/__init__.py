"""Token mixers: nn.Modules mapping [B, T, D] -> [B, T, D], each with ``step()`` for one token and state I/O.

Layers with ``has_min_eigenvalue`` take ``min_eigenvalue`` in [-1, 0] (-1: transition eigenvalues in [-1, 1];
0: the original [0, 1]). ``MIXERS`` names every mixer; :func:`get_mixer_class` imports one by name.
"""

from __future__ import annotations

import importlib

from .base import Mixer, RMSNorm, ShortConv, State, check_heads, check_min_eigenvalue

# name -> (module, class). Imported on demand so that one layer's missing op does not break the others.
MIXERS: dict[str, tuple[str, str]] = {
    "deltanet": ("delta_net", "DeltaNet"),
    "gated_deltanet": ("delta_net", "GatedDeltaNet"),
    "deltaproduct": ("delta_net", "DeltaProduct"),
    "mamba": ("mamba", "Mamba"),
    "diagonal_rnn": ("diagonal_rnn", "DiagonalRNN"),
    "full_matrix_rnn": ("full_matrix_rnn", "FullMatrixRNN"),
    "transformer": ("attention", "Attention"),
    "lstm": ("lstm", "LSTM"),
    "slstm": ("xlstm", "SLSTM"),
    "mlstm": ("xlstm", "MLSTM"),
}


def get_mixer_class(name: str) -> type[Mixer]:
    """The Mixer class registered under ``name`` (see ``MIXERS``)."""
    if name not in MIXERS:
        raise ValueError(f"unknown mixer {name!r}; choose one of {sorted(MIXERS)}")
    module, cls = MIXERS[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def __getattr__(attr: str):  # from statetrack.layers import DeltaNet, Mamba, ...
    for module, cls in MIXERS.values():
        if cls == attr:
            return getattr(importlib.import_module(f"{__name__}.{module}"), cls)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


__all__ = ["MIXERS", "Mixer", "RMSNorm", "ShortConv", "State", "check_heads", "check_min_eigenvalue",
           "get_mixer_class", *(c for _, c in MIXERS.values())]  # fmt: skip
