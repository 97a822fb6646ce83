"""Import of Triton kernel modules, and the one rule about Triton's interpreter.

Triton decides when ``triton.language`` is imported whether ``@triton.jit`` code is compiled or interpreted
(``TRITON_INTERPRET=1``), for the whole process. So the kernels run on CUDA tensors in a normal process, and on CPU
tensors (slowly, for tests) only in a process that set ``TRITON_INTERPRET=1`` before importing triton. Kernel
modules hold only ``@triton.jit`` code and are imported on first use, through :func:`kernels_for`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

import torch


def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def interpreter_requested() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0", "false", "False")


def kernels_for(device: torch.device, module: str) -> ModuleType:
    """The kernel module ``module`` (absolute name), after checking that it can run on tensors of ``device``."""
    if device.type != "cuda" and not interpreter_requested():
        raise RuntimeError(
            f"the triton kernels run on CUDA tensors, or on {device} tensors only under Triton's interpreter "
            "(set TRITON_INTERPRET=1 before triton is imported)"
        )
    return importlib.import_module(module)


def loop_bound(n: int) -> int:
    """Value of the ``*_I`` compile-time twin of a run-time loop bound ``n``: ``n`` under the interpreter, else 0.

    The interpreter turns a run-time ``range`` bound into a 1-element numpy array, which numpy >= 2.4 refuses to
    convert to an int; a compile-time bound works there. Compiled kernels keep the run-time bound (one compile for
    every length) and loop with ``tl.range``, which Triton can software-pipeline, unlike a ``while`` loop."""
    return n if interpreter_requested() else 0
