"""Import of the kernels, and the one rule about Triton's interpreter.

Triton decides when ``triton.language`` is imported whether ``@triton.jit`` code is compiled or interpreted
(``TRITON_INTERPRET=1``), for the whole process. So the kernels run on CUDA tensors in a normal process, and on CPU
tensors (slowly, for tests) only in a process that set ``TRITON_INTERPRET=1`` before importing triton.
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


def kernels_for(device: torch.device, module: str = "kernels") -> ModuleType:
    """The kernel module ``module`` of this package, after checking that it can run on tensors of ``device``."""
    if device.type != "cuda" and not interpreter_requested():
        raise RuntimeError(
            f"the triton kernels run on CUDA tensors, or on {device} tensors only under Triton's interpreter "
            "(set TRITON_INTERPRET=1 before triton is imported)"
        )
    return importlib.import_module(f"{__package__}.{module}")
