"""``update_states_in_place()``: decoding steps write new states over the old ones.

A step of the ops is functional: ``delta_rule_step`` and ``short_conv`` return a new state and leave the one
they were given alone. Inside a recorded CUDA graph of a decoding step that means a copy kernel per state per
layer, to carry the new state back into the buffer the next replay reads (a hundred launches a token at 24
layers). Inside this context manager (in this thread, without gradients) the Triton paths write the new state
into the given one and return it: callers see ``new is old``. The torch references stay functional.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

_thread = threading.local()


def states_in_place(state: torch.Tensor | None, dtype: torch.dtype) -> bool:
    """Whether a step may write its new state into ``state`` (of the new state's shape, as the step's checks
    ensure): inside :func:`update_states_in_place`, gradients off, and ``state`` a contiguous ``dtype`` tensor."""
    return (
        getattr(_thread, "on", False) and state is not None and not torch.is_grad_enabled()
        and state.is_contiguous() and state.dtype == dtype
    )  # fmt: skip


@contextlib.contextmanager
def update_states_in_place() -> Iterator[None]:
    """Context manager: the Triton decoding steps inside write new states over the old (module docstring)."""
    old = getattr(_thread, "on", False)
    _thread.on = True
    try:
        yield
    finally:
        _thread.on = old
