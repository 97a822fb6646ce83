"""Host-side helpers shared by the delta-rule kernel launchers (``chunk.py``, ``recurrent.py``)."""

from __future__ import annotations

import torch


def contiguous(*tensors: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    """The tensors in row-major layout (the kernels compute their offsets from the shapes alone); None stays None."""
    return tuple(None if x is None else x.contiguous() for x in tensors)


def check_tuning(tuning: dict, keys: tuple[str, ...], algorithm: str) -> None:
    """Refuse triton_config keys the kernels of ``algorithm`` do not have, and values that are not positive ints
    (block widths and warps: powers of two)."""
    bad = sorted(set(tuning) - set(keys))
    if bad:
        raise ValueError(f"triton_config has no keys {bad} for algorithm {algorithm!r} (its keys: {list(keys)})")
    for name, value in tuning.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"triton_config[{name!r}] must be a positive int, got {value!r}")
        if name.startswith(("B", "warps")) and value & (value - 1):
            raise ValueError(f"triton_config[{name!r}] must be a power of two, got {value}")
