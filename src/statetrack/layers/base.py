"""What every token mixer shares: the state convention, the min_eigenvalue check, the short causal conv and RMSNorm.

Shape letters: B batch, T time, D model width (d_model), H heads, K key dim per head, V value dim per head,
C channels of a short convolution, W its kernel width.

State convention (every layer): a state is a ``dict[str, Tensor]`` (easy to save with ``torch.save`` and to move
with ``{k: v.to(dev) ...}``); ``init_state(B)`` gives the empty one, ``forward(x, state, output_state=True)``
continues from a state and returns the one after the last token, and ``step(x_t, state)`` advances one token.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from statetrack.ops import (  # position_in_document: its old home, callers import it from here too
    check_min_eigenvalue,
    position_in_document,  # noqa: F401
    rms_norm_gated,
    short_conv,
    state_dtype,
)

State = dict[str, torch.Tensor]


def check_heads(width: int, n_heads: int, what: str = "d_model") -> int:
    """Return the per-head size; fail clearly when the heads do not divide the width."""
    if n_heads < 1:
        raise ValueError(f"n_heads must be >= 1, got {n_heads}")
    if width % n_heads:
        raise ValueError(f"n_heads = {n_heads} must divide {what} = {width} (head size would be {width / n_heads})")
    return width // n_heads


S = TypeVar("S", bound="MixerSettings")


@dataclasses.dataclass
class MixerSettings:
    """Base of every mixer's settings: a dataclass of the layer's knobs beyond the width, checked when made.

    Subclasses add fields (with defaults) and extend :meth:`check`; the registry names the owner in errors.
    """

    owner: ClassVar[str] = "this mixer"

    def __post_init__(self):
        self.check()

    def check(self, d_model: int | None = None) -> None:
        """Raise ValueError/TypeError naming the bad field. With ``d_model``, also what depends on the width
        (heads that divide it)."""
        if hasattr(self, "min_eigenvalue"):
            self.min_eigenvalue = check_min_eigenvalue(self.min_eigenvalue)
        for name in ("n_heads", "conv_size", "num_householder", "d_state", "expand", "n"):
            value = getattr(self, name, None)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if getattr(self, "n_heads", None) is not None and d_model is not None:
            check_heads(d_model, self.n_heads)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


def make_settings(cls: type[S], settings: S | dict | None = None, overrides: dict | None = None) -> S:
    """Settings of type ``cls`` from an instance, a dict (unknown keys raise, naming the mixer) or None (the
    defaults), with ``overrides`` (keyword arguments) on top."""
    if isinstance(settings, MixerSettings):
        if type(settings) is not cls:
            raise TypeError(f"settings of {cls.owner} must be {cls.__name__}, got {type(settings).__name__}")
        values = settings.to_dict()
    elif settings is None:
        values = {}
    elif isinstance(settings, Mapping):
        values = dict(settings)
    else:
        raise TypeError(f"settings must be a {cls.__name__}, a dict or None, got {type(settings).__name__}")
    values.update(overrides or {})
    unknown = sorted(set(values) - set(cls.names()))
    if unknown:
        raise ValueError(f"{cls.owner} has no setting {', '.join(map(repr, unknown))}; its settings: {cls.names()}")
    return cls(**values)


class Mixer(nn.Module):
    """Base class of the token mixers: [B, T, D] -> [B, T, D] with a recurrent (or cached) state.

    A subclass is registered with its settings (``@register_mixer(name, SettingsDataclass)``) and writes
    :meth:`build`; it is made as ``Cls(d_model, settings=None, **overrides)``, e.g. ``DeltaNet(128, n_heads=4)``
    or ``DeltaNet(128, settings)``. The checked settings are ``self.settings``.
    """

    Settings: ClassVar[type[MixerSettings]] = MixerSettings
    mixer_name: ClassVar[str] = ""

    def __init__(self, d_model: int, settings: MixerSettings | Mapping | None = None, **overrides):
        super().__init__()
        if isinstance(d_model, bool) or not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"d_model must be an int >= 1, got {d_model!r}")
        self.d_model = d_model
        self.settings = make_settings(self.Settings, settings, overrides)
        self.settings.check(d_model)
        self.build(d_model, self.settings)

    def build(self, d_model: int, s: MixerSettings) -> None:  # pragma: no cover
        """Make the layer's parameters and sub-modules for width ``d_model`` and settings ``s``."""
        raise NotImplementedError

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
        """Recurrent states are fp32 (fp64 for fp64 inputs), whatever the compute dtype (the ops' rule)."""
        return state_dtype(x.dtype)

    def _device(self, device) -> torch.device:
        return torch.device(device) if device is not None else next(self.parameters()).device


def causal_conv(x, weight, bias, cache=None, activation: bool = True, cu_seqlens=None, backend: str = "torch"):
    """Causal depthwise convolution along time, in the [B, T, C] layout, optionally followed by SiLU.

    x [B, T, C]; weight [C, W]; bias [C] or None; cache [B, C, W-1] (the W-1 inputs before x) or None (zeros).
    Returns (y [B, T, C], new cache [B, C, W-1]). y_t = bias + sum_i weight[:, i] * x_{t - W + 1 + i}.
    With ``cu_seqlens`` [N + 1] (x a packed row, B = 1, no cache): no window reaches back past its document's
    start, and the new cache is each document's last W - 1 inputs, [N, C, W-1].
    ``backend``: :func:`statetrack.ops.short_conv`'s ("torch", the reference, by default here; "triton": the fused
    kernels; "auto": triton on CUDA).
    """
    return short_conv(x, weight, bias, cache, activation=activation, cu_seqlens=cu_seqlens, backend=backend)


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

    def step(self, x: torch.Tensor, cache: torch.Tensor, backend: str = "torch") -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C], cache [B, C, W-1] -> (y [B, C], new cache). ``backend`` other than "torch": the forward's
        :func:`causal_conv` on the one token (one fused kernel on CUDA, where a graphed decoding step is bound by
        launches)."""
        if backend != "torch":
            y, new = causal_conv(x[:, None], self.weight[:, 0], self.bias, cache, self.activation, backend=backend)
            return y[:, 0], new
        full = torch.cat([cache.to(x.dtype), x[:, :, None]], dim=2)  # [B, C, W]
        y = (full * self.weight[:, 0].to(x.dtype)).sum(-1) + self.bias.to(x.dtype)
        return (F.silu(y) if self.activation else y), full[:, :, 1:]


class RMSNorm(nn.Module):
    """RMSNorm over the last dim, with an optional SiLU gate (``norm(x) * silu(gate)``, Gated DeltaNet's output)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor, gate: torch.Tensor | None = None, backend: str = "torch",
                out_dtype: torch.dtype | None = None) -> torch.Tensor:  # fmt: skip
        """x [..., dim], gate [..., dim] or None -> [..., dim]: fp32 statistics and gain whatever the input dtype;
        in ``out_dtype`` if given, else x's. ``backend``: :func:`statetrack.ops.rms_norm_gated`'s ("torch" by
        default here; "triton": one fused kernel each way, no fp32 copies of the activations kept for the
        backward)."""
        return rms_norm_gated(x, self.weight, gate, self.eps, backend=backend, out_dtype=out_dtype)
