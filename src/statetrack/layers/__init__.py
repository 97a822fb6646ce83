"""Token mixers: nn.Modules mapping [B, T, D] -> [B, T, D], each with ``step()`` for one token and state I/O.

Every mixer registers itself once (:mod:`.registry`) with its settings dataclass; ``MIXERS`` maps each name to
its class, :func:`build_mixer` makes one from a width and settings. Mixers whose settings have
``min_eigenvalue`` take it in [-1, 0] (-1: transition eigenvalues in [-1, 1]; 0: the original [0, 1]).
"""

from __future__ import annotations

from .attention import Attention, AttentionSettings
from .base import Mixer, MixerSettings, RMSNorm, ShortConv, State, check_heads, check_min_eigenvalue
from .delta_net import (
    DeltaNet,
    DeltaNetSettings,
    DeltaProduct,
    DeltaProductSettings,
    GatedDeltaNet,
    GatedDeltaNetSettings,
)
from .diagonal_rnn import DiagonalRNN, DiagonalRNNSettings
from .full_matrix_rnn import FullMatrixRNN, FullMatrixRNNSettings
from .lstm import LSTM, LSTMSettings
from .mamba import Mamba, MambaSettings
from .registry import MIXERS, build_mixer, get_mixer_class, mixer_settings, register_mixer
from .xlstm import MLSTM, SLSTM, MLSTMSettings, SLSTMSettings

__all__ = [
    "LSTM",
    "MIXERS",
    "MLSTM",
    "SLSTM",
    "Attention",
    "AttentionSettings",
    "DeltaNet",
    "DeltaNetSettings",
    "DeltaProduct",
    "DeltaProductSettings",
    "DiagonalRNN",
    "DiagonalRNNSettings",
    "FullMatrixRNN",
    "FullMatrixRNNSettings",
    "GatedDeltaNet",
    "GatedDeltaNetSettings",
    "LSTMSettings",
    "MLSTMSettings",
    "Mamba",
    "MambaSettings",
    "Mixer",
    "MixerSettings",
    "RMSNorm",
    "SLSTMSettings",
    "ShortConv",
    "State",
    "build_mixer",
    "check_heads",
    "check_min_eigenvalue",
    "get_mixer_class",
    "mixer_settings",
    "register_mixer",
]
