"""What every token mixer shares: the state convention, the min_eigenvalue check and the short causal conv.

Shape letters: B batch, T time, D model width (d_model), H heads, K key dim per head, V value dim per head,
C channels of a short convolution, W its kernel width.

State convention (every layer): a state is a ``dict[str, Tensor]`` (easy to save with ``torch.save`` and to move
with ``{k: v.to(dev) ...}``); ``init_state(B)`` gives the empty one, ``forward(x, state, output_state=True)``
continues from a state and returns the one after the last token, and ``step(x_t, state)`` advances one token.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

State = dict[str, torch.Tensor]


def check_min_eigenvalue(value: float) -> float:
    """min_eigenvalue must be a finite float in [-1, 0]: -1 gives the range [-1, 1], 0 the original [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"min_eigenvalue must be a float in [-1, 0], got {type(value).__name__} {value!r}")
    value = float(value)
    if not (math.isfinite(value) and -1.0 <= value <= 0.0):
        raise ValueError(
            f"min_eigenvalue must lie in [-1, 0] (-1: eigenvalues in [-1, 1]; 0: the original [0, 1]), got {value}"
        )
    return value


def check_heads(width: int, n_heads: int, what: str = "d_model") -> int:
    """Return the per-head size; fail clearly when the heads do not divide the width."""
    if n_heads < 1:
        raise ValueError(f"n_heads must be >= 1, got {n_heads}")
    if width % n_heads:
        raise ValueError(f"n_heads = {n_heads} must divide {what} = {width} (head size would be {width / n_heads})")
    return width // n_heads


class Mixer(nn.Module):
    """Base class of the token mixers: [B, T, D] -> [B, T, D] with a recurrent (or cached) state."""

    #: True for layers whose transition eigenvalues follow ``min_eigenvalue``.
    has_min_eigenvalue: bool = False

    def init_state(self, batch_size: int, device=None, dtype: torch.dtype = torch.float32) -> State:
        """The state before the first token (zeros, or what the layer defines); ``dtype`` is the state's
        (fp32, or fp64 for fp64 models)."""
        raise NotImplementedError  # pragma: no cover

    def forward(
        self, x: torch.Tensor, state: State | None = None, output_state: bool = False
    ) -> tuple[torch.Tensor, State | None]:  # pragma: no cover
        """x [B, T, D] -> (y [B, T, D], state after the last token if ``output_state`` else None)."""
        raise NotImplementedError

    def step(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:  # pragma: no cover
        """One token: x [B, D] -> (y [B, D], new state)."""
        raise NotImplementedError

    @staticmethod
    def state_dtype(x: torch.Tensor) -> torch.dtype:
        """Recurrent states are fp32 (fp64 for fp64 inputs), whatever the compute dtype."""
        return torch.float64 if x.dtype == torch.float64 else torch.float32

    def _device(self, device) -> torch.device:
        return torch.device(device) if device is not None else next(self.parameters()).device


def causal_conv(x, weight, bias, cache=None, activation: bool = True):
    """Causal depthwise convolution along time, in the [B, T, C] layout, optionally followed by SiLU.

    x [B, T, C]; weight [C, W]; bias [C]; cache [B, C, W-1] (the W-1 inputs before x) or None (zeros).
    Returns (y [B, T, C], new cache [B, C, W-1]). y_t = bias + sum_i weight[:, i] * x_{t - W + 1 + i}.
    Why W shifted multiply-adds rather than F.conv1d: at these widths (W = 4) cuDNN's depthwise kernels, and the
    transposes to [B, C, T] around them, cost several times more, its weight gradient above all.
    """
    B, T, C = x.shape
    W = weight.shape[1]
    w = weight.to(x.dtype)
    if cache is None:
        full = F.pad(x, (0, 0, W - 1, 0))
    else:
        full = torch.cat([cache.transpose(1, 2).to(x.dtype), x], dim=1)  # [B, W-1+T, C]
    y = torch.addcmul(bias.to(x.dtype), x, w[:, W - 1])
    for i in range(W - 1):
        y = torch.addcmul(y, full[:, i : i + T], w[:, i])
    new_cache = full[:, T:].transpose(1, 2)
    return (F.silu(y) if activation else y), new_cache


class ShortConv(nn.Module):
    """Causal depthwise 1-D convolution (kernel W) with SiLU, as after the q/k/v projections of DeltaNet and Mamba.

    Its state is the last W - 1 inputs, ``[B, C, W - 1]``, so that decoding token by token sees what the
    full-sequence convolution sees.
    """

    def __init__(self, channels: int, kernel_size: int = 4, activation: bool = True):
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"conv kernel_size must be >= 1, got {kernel_size}")
        self.channels, self.kernel_size, self.activation = channels, kernel_size, activation
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def init_state(self, batch_size: int, device, dtype=torch.float32) -> torch.Tensor:
        return torch.zeros(batch_size, self.channels, self.kernel_size - 1, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, cache: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, T, C], cache [B, C, W-1] or None (zeros) -> (y [B, T, C], new cache [B, C, W-1])."""
        return causal_conv(x, self.weight[:, 0], self.bias, cache, self.activation)

    def step(self, x: torch.Tensor, cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C], cache [B, C, W-1] -> (y [B, C], new cache)."""
        full = torch.cat([cache.to(x.dtype), x[:, :, None]], dim=2)  # [B, C, W]
        y = (full * self.weight[:, 0].to(x.dtype)).sum(-1) + self.bias.to(x.dtype)
        return (F.silu(y) if self.activation else y), full[:, :, 1:]


class RMSNorm(nn.Module):
    """RMSNorm over the last dim, with an optional SiLU gate (``norm(x) * silu(gate)``, Gated DeltaNet's output)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        # fp32 statistics and gain whatever the input dtype; F.rms_norm is one fused kernel on CUDA
        ft = torch.promote_types(x.dtype, torch.float32)
        y = F.rms_norm(x.to(ft), (x.shape[-1],), self.weight.to(ft), self.eps).to(x.dtype)
        if gate is not None:
            y = y * F.silu(gate)
        return y
