"""Which path runs a ``delta_rule`` call: a backend and an algorithm, picked from the caller's named choices.

What each backend implements:

    naive   "recurrent"           the sequential loop, the oracle (any device, any float dtype)
    torch   "chunk"               the chunked WY/UT form in PyTorch, hand-written backward (any device)
    triton  "recurrent", "chunk"  fused token-by-token kernels, or chunk-parallel ones (CUDA; CPU under the
                                  interpreter; bf16/fp16/fp32)
    fla     "chunk"               flash-linear-attention's chunked kernels (CUDA, when fla is installed)

The tuning arguments belong to paths: ``chunk_size`` (tokens per chunk) to the chunk algorithm of torch and
triton, ``precision`` to triton's chunk kernels, ``triton_config`` (block settings) to triton's kernels, its keys
to one algorithm's (``triton.CHUNK_TUNING``, ``triton.RECURRENT_TUNING``). One given for a path that has no such
setting is an error, never silently ignored; None / "auto" always means the path's own default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .._checks import refuse_off_path, require_chunk_size, require_config, resolve_backend
from ..backends import auto_order
from .triton import CHUNK_TUNING, PRECISIONS, RECURRENT_TUNING

ALGORITHMS = ("recurrent", "chunk")
BACKEND_ALGORITHMS = {
    "naive": ("recurrent",),
    "torch": ("chunk",),
    "triton": ("recurrent", "chunk"),
    "fla": ("chunk",),
}
BACKENDS = tuple(BACKEND_ALGORITHMS)
_TUNING = {"recurrent": RECURRENT_TUNING, "chunk": CHUNK_TUNING}


@dataclass(frozen=True)
class Path:
    """A resolved call: backend, algorithm and the triton chunk kernels' precision (None on the other paths)."""

    backend: str
    algorithm: str
    precision: str | None


def _implied(chunk_size, precision, triton_config) -> set[str]:
    """The algorithms that the tuning arguments given belong to."""
    out = {"chunk"} if chunk_size is not None or precision != "auto" else set()
    return out | {a for a, keys in _TUNING.items() if set(triton_config or ()) & set(keys)}


def choose_path(
    backend: str,
    algorithm: str,
    chunk_size: int | None,
    precision: str,
    triton_config: dict | None,
    available: dict[str, bool],
    device: torch.device,
    short: Callable[[], bool],
    auto_precision: Callable[[], str],
) -> Path:
    """The path of one call (see ``delta_rule``'s docstring for the rules); ``short()``: whether the sequences are
    short enough for the token-by-token kernels (``triton.prefers_recurrent``), asked only when it decides;
    ``auto_precision()``: the triton chunk kernels' precision for "auto" (``triton.auto_precision``)."""
    if algorithm not in ("auto", *ALGORITHMS):
        raise ValueError(f"algorithm must be one of {['auto', *ALGORITHMS]}, got {algorithm!r}")
    if precision not in ("auto", *PRECISIONS):
        raise ValueError(f"precision must be one of {['auto', *PRECISIONS]}, got {precision!r}")
    require_chunk_size(chunk_size)
    triton_config = require_config("triton_config", triton_config, RECURRENT_TUNING + CHUNK_TUNING) or None
    order = [b for b in auto_order(device) if algorithm == "auto" or algorithm in BACKEND_ALGORITHMS[b]]
    name = resolve_backend(backend, available, device, order)
    offered = BACKEND_ALGORITHMS[name]
    implied = _implied(chunk_size, precision, triton_config)
    if algorithm != "auto":
        if algorithm not in offered:
            raise ValueError(f"algorithm={algorithm!r}: backend {name!r} offers {list(offered)}")
        algo = algorithm
    elif len(offered) == 1:
        algo = offered[0]
    elif len(implied) > 1:
        raise ValueError(
            "chunk_size / precision and triton_config's keys belong to different triton algorithms: name one with "
            "algorithm='recurrent' or 'chunk'"
        )
    elif implied:
        algo = next(iter(implied))
    else:
        algo = "recurrent" if short() else "chunk"

    refuse_off_path("chunk_size", chunk_size, f"algorithm={algo!r}", "algorithm='chunk'")
    if name == "fla":  # its chunk kernels have a fixed chunk
        refuse_off_path("chunk_size", chunk_size, "backend='fla'", "backend='torch' or 'triton'")
    refuse_off_path("triton_config", triton_config, f"backend={name!r}", "backend='triton'")
    path = f"backend={name!r}, algorithm={algo!r}"
    refuse_off_path("precision", precision, path, "backend='triton', algorithm='chunk'")
    if path != "backend='triton', algorithm='chunk'":
        return Path(name, algo, None)
    return Path(name, algo, auto_precision() if precision == "auto" else precision)
