"""Import of Triton kernel modules, and the one rule about Triton's interpreter.

Triton decides when ``triton.language`` is imported whether ``@triton.jit`` code is compiled or interpreted
(``TRITON_INTERPRET=1``), for the whole process. So the kernels run on CUDA tensors in a normal process, and on CPU
tensors (slowly, for tests) only in a process that set ``TRITON_INTERPRET=1`` before importing triton. Kernel
modules hold only ``@triton.jit`` code and are imported on first use, through :func:`kernels_for`.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from types import ModuleType

import torch


@functools.cache  # a module search costs ~80 us when it is not imported yet: once per process, not per call
def module_installed(name: str) -> bool:
    """Whether the top-level module ``name`` can be imported (looked up once per process)."""
    return importlib.util.find_spec(name) is not None


def triton_installed() -> bool:
    return module_installed("triton")


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


KERNEL_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def require_kernel_dtypes(**tensors: torch.Tensor | None) -> None:
    """The kernels take bf16, fp16 or fp32 tensors (fp64 stays on the torch paths); None entries are skipped."""
    for name, x in tensors.items():
        if x is not None and x.dtype not in KERNEL_DTYPES:
            raise TypeError(f"the triton backend takes bf16, fp16 or fp32 {name}, got {x.dtype}")


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def pow2(x: int) -> int:
    """The smallest power of two >= x (1 for x <= 1)."""
    return 1 << max(0, int(x) - 1).bit_length()


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def sm_count(device: torch.device) -> int | None:
    """Multiprocessors of a CUDA device (None elsewhere: the interpreter has no such limit)."""
    if device.type != "cuda":
        return None
    return _sm_count(device.index if device.index is not None else torch.cuda.current_device())


def loop_bound(n: int) -> int:
    """Value of the ``*_I`` compile-time twin of a run-time loop bound ``n``: ``n`` under the interpreter, else 0.

    The interpreter turns a run-time ``range`` bound into a 1-element numpy array, which numpy >= 2.4 refuses to
    convert to an int; a compile-time bound works there. Compiled kernels keep the run-time bound (one compile for
    every length) and loop with ``tl.range``, which Triton can software-pipeline, unlike a ``while`` loop."""
    return n if interpreter_requested() else 0
