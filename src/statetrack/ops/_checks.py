"""Input validation shared by every op: errors name the argument and say what was expected.

Value-range checks (beta in [0, 2], a >= -1, ...) read tensor values and therefore synchronise a GPU; they can be
switched off with :func:`value_checks` (a context manager) or :func:`set_value_checks`, or for a whole process with
the environment variable ``STATETRACK_VALUE_CHECKS=0``. Shape, dtype and device checks are always on: they are free.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence

import torch

_FLOAT_DTYPES = (torch.bfloat16, torch.float16, torch.float32, torch.float64)
_default_checks = os.environ.get("STATETRACK_VALUE_CHECKS", "1") not in ("0", "false", "False")
# value_checks(...) overrides the default for the calling thread only: runs trained side by side in threads
# must not switch each other's checks (a host sync inside a CUDA-graph capture breaks the capture)
_thread = threading.local()


def set_value_checks(enabled: bool) -> None:
    """Turn the value-range checks of every op on or off for this process (threads inside ``value_checks``
    keep their own setting)."""
    global _default_checks
    _default_checks = bool(enabled)


def value_checks_enabled() -> bool:
    """Whether the ops check their inputs' values. Never while torch.compile traces: a check reads a value on
    the host (a graph break), and dynamo would guard on that value and recompile the model at every new one."""
    if torch.compiler.is_compiling():
        return False
    return getattr(_thread, "enabled", _default_checks)


@contextlib.contextmanager
def value_checks(enabled: bool) -> Iterator[None]:
    """Context manager: ``with value_checks(False): ...`` skips the range checks inside, in this thread."""
    old = getattr(_thread, "enabled", None)
    _thread.enabled = bool(enabled)
    try:
        yield
    finally:
        if old is None:
            del _thread.enabled
        else:
            _thread.enabled = old


def require_float(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must be a floating-point tensor (bf16, fp16, fp32 or fp64), got dtype {x.dtype}")
    return x


def require_shape(name: str, x: torch.Tensor, expected: Sequence[int | None], letters: str) -> None:
    """Check ``x.shape`` against ``expected`` (None = any size); ``letters`` names the dims, e.g. "[B, T, H, K]"."""
    shape = x.shape
    if len(shape) == len(expected):  # a plain loop: this runs several times per op call, on the host's hot path
        for e, s in zip(expected, shape, strict=True):
            if e is not None and e != s:
                break
        else:
            return
    want = ", ".join("?" if e is None else str(e) for e in expected)
    raise ValueError(f"{name} must have shape {letters} = [{want}], got {list(x.shape)}")


def require_same_device(**tensors: torch.Tensor | None) -> torch.device:
    """All given tensors must live on one device; returns it."""
    items = [(n, t) for n, t in tensors.items() if t is not None]
    dev = items[0][1].device
    for n, t in items[1:]:
        if t.device != dev:
            raise ValueError(f"{n} is on {t.device} but {items[0][0]} is on {dev}: all inputs must share a device")
    return dev


def require_range(name: str, x: torch.Tensor, lo: float | None, hi: float | None) -> None:
    """Raise if any entry of ``x`` is outside [lo, hi] or not finite (skipped when value checks are off)."""
    if not value_checks_enabled() or x.numel() == 0:
        return
    with torch.no_grad():
        # one pass for min and max (NaN propagates into both), in x's own dtype (a bf16 bound is exact as a float);
        # the full mask, several boolean tensors of x's size, only to write the message
        x_min, x_max = torch.aminmax(x.detach())
        ok = bool(torch.isfinite(x_min) & torch.isfinite(x_max))
        ok = ok and (lo is None or x_min.item() >= lo) and (hi is None or x_max.item() <= hi)
        if ok:
            return
        bad = ~torch.isfinite(x)
        if lo is not None:
            bad |= x < lo
        if hi is not None:
            bad |= x > hi
        vals = x[bad]
        raise ValueError(
            f"{name} must lie in [{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]; "
            f"found {vals.numel()} entries outside, e.g. {vals.flatten()[0].item():.6g} "
            "(disable with statetrack.ops.value_checks(False) if you know better)"
        )


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of recurrent states and accumulation for inputs of ``dtype``: fp64 for fp64, fp32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_min_eigenvalue(value: object) -> float:
    """``min_eigenvalue`` as a float: a finite real number in [-1, 0] (-1 gives transitions with eigenvalues in
    [-1, 1], 0 the original models' [0, 1]). TypeError for bools and non-numbers, ValueError outside the range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"min_eigenvalue must be a real number (a float in [-1, 0]), got {type(value).__name__} "
                        f"{value!r}")  # fmt: skip
    value = float(value)
    if not (math.isfinite(value) and -1.0 <= value <= 0.0):
        raise ValueError(
            f"min_eigenvalue must lie in [-1, 0] (-1: eigenvalues in [-1, 1]; 0: the original [0, 1]), got {value}"
        )
    return value


def require_chunk_size(chunk_size: object) -> None:
    """``chunk_size`` (tokens per chunk) must be a positive int, or None for the op's default."""
    if chunk_size is None:
        return
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")


def refuse_off_path(name: str, value: object, path: str, applies_to: str) -> None:
    """An explicit argument that the chosen path would ignore is an error, not a silent no-op: ``value`` (None or
    "auto" mean "not given") must be unset unless ``path`` is ``applies_to``."""
    if value is None or value == "auto" or path == applies_to:
        return
    raise ValueError(f"{name}={value!r} applies to {applies_to} only, and this call runs {path}")


def require_config(name: str, config: Mapping[str, object] | None, allowed: Iterable[str]) -> dict[str, object]:
    """A tuning dict (e.g. ``triton_config``): None or a dict whose keys are all in ``allowed``; returns a copy."""
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise TypeError(f"{name} must be a dict or None, got {type(config).__name__}")
    allowed = tuple(allowed)
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise ValueError(f"{name} has unknown keys {unknown}; the keys are {list(allowed)}")
    return dict(config)


def require_state(name: str, s: torch.Tensor | None, expected: Sequence[int], letters: str, dtype: torch.dtype):
    if s is None:
        return
    require_float(name, s)
    require_shape(name, s, expected, letters)
    if s.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype} (the state dtype for these inputs), got {s.dtype}")


def require_cu_seqlens(cu_seqlens: torch.Tensor | None, batch: int, length: int) -> int:
    """Validate FlashAttention-style ``cu_seqlens`` [N + 1]; returns N (or ``batch`` when it is None)."""
    if cu_seqlens is None:
        return batch
    if not isinstance(cu_seqlens, torch.Tensor):
        raise TypeError(f"cu_seqlens must be a torch.Tensor, got {type(cu_seqlens).__name__}")
    if cu_seqlens.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"cu_seqlens must be int32 or int64, got {cu_seqlens.dtype}")
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        raise ValueError(f"cu_seqlens must be 1-D with N + 1 >= 2 entries, got shape {list(cu_seqlens.shape)}")
    if batch != 1:
        raise ValueError(f"with cu_seqlens the batch size must be 1 (sequences packed along T), got B = {batch}")
    c = cu_seqlens.tolist()
    if c[0] != 0 or c[-1] != length:
        raise ValueError(f"cu_seqlens must start at 0 and end at T = {length}, got {c[0]} ... {c[-1]}")
    if any(b < a for a, b in zip(c, c[1:], strict=False)):
        raise ValueError(f"cu_seqlens must be non-decreasing, got {c}")
    return len(c) - 1


def resolve_backend(backend: str, available: dict[str, bool], device: torch.device, auto_order: Sequence[str]):
    """Pick a backend name. ``available`` maps every known backend to whether it can run here."""
    if backend == "auto":
        for b in auto_order:
            if available.get(b, False):
                return b
        raise RuntimeError(f"no backend available on {device}")  # pragma: no cover - "naive" always is
    if backend not in available:
        raise ValueError(f"backend must be one of {['auto', *available]}, got {backend!r}")
    if not available[backend]:
        raise ValueError(
            f"backend {backend!r} is not available on {device} (installed: "
            f"{[b for b, ok in available.items() if ok]})"
        )
    return backend
