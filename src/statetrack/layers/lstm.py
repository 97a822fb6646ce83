"""The LSTM baseline: torch's cuDNN/oneDNN LSTM with hidden size D. State {"h": [B, D], "c": [B, D]}."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import Mixer, MixerSettings, State
from .registry import register_mixer


@dataclass
class LSTMSettings(MixerSettings):
    """The LSTM has no settings beyond its width."""


@register_mixer("lstm", LSTMSettings)
class LSTM(Mixer):
    """x [B, T, D] -> y [B, T, D] = the hidden states of a one-layer LSTM of width D."""

    def build(self, d_model: int, s: LSTMSettings) -> None:
        self.lstm = nn.LSTM(d_model, d_model, batch_first=True)

    def init_state(self, batch_size: int, device=None, dtype: torch.dtype = torch.float32) -> State:
        z = torch.zeros(batch_size, self.lstm.hidden_size, device=self._device(device), dtype=dtype)
        return {"h": z, "c": z.clone()}

    def forward(self, x: torch.Tensor, state: State | None = None, output_state: bool = False):
        """x [B, T, D] -> (y [B, T, D], {"h", "c"} or None)."""
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # oneDNN has no bf16 LSTM primitive on CPUs without bf16 instructions (it raised "could not create a
            # primitive descriptor" on an AMD EPYC): on the CPU the recurrence runs in fp32, as the weights are
            with torch.autocast("cpu", enabled=False):
                return self.forward(x.float(), state, output_state)
        hc = None if state is None else (state["h"][None].to(x.dtype), state["c"][None].to(x.dtype))
        y, (h, c) = self.lstm(x, hc)
        return y, ({"h": h[0], "c": c[0]} if output_state else None)

    def step(self, x: torch.Tensor, state: State | None = None):
        """x [B, D] -> (y [B, D], new state)."""
        y, st = self.forward(x[:, None], state, output_state=True)
        return y[:, 0], st
