"""``train.deterministic``: the same run key (config + seed) gives bitwise the same losses on the same GPU and
software, whatever else shares the GPU.

What it switches on, for the duration of a run (each restored afterwards):

* ``torch.use_deterministic_algorithms(True, warn_only=False)``: ops with a nondeterministic default take their
  deterministic implementation (flash / memory-efficient attention backward: the Transformer's SDPA adds dQ with
  atomics otherwise; index_add, scatter_add, index_put backward), and an op that has none raises instead of
  training a different run (torch.cumsum on CUDA floats: :func:`statetrack.ops.prefix_sum` takes a log-step scan
  then). It also fills memory from ``torch.empty`` with NaN, so a kernel that read memory it never wrote would
  fail loudly instead of reading whatever a previous allocation left there. Inductor's deterministic mode comes
  with it (no autotuning or benchmarking of kernels by timing under ``train.compile``).
* ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (unless already set): cuBLAS is deterministic only with a fixed workspace
  per stream; torch refuses cuBLAS calls in deterministic mode without it. cuBLAS reads it when a handle is made,
  so it must be set before the first matmul of the process: :func:`set_process_env` (the sweep's workers call it
  first thing; :func:`deterministic` sets it if missing and warns when CUDA was already initialised without it).
* cuDNN: ``benchmark`` off (it picks algorithms by timing), ``deterministic`` on (nn.LSTM, convolutions).

The trainer adds (``loop.train``): a failed CUDA-graph capture raises instead of falling back to an eager step
(on another stream, with its own cuBLAS workspace: not promised the same bits), and :func:`refusals` names
settings that cannot be deterministic (delta-rule ``backend='fla'``: flash-linear-attention picks its kernels'
blocks by timing, Triton autotune).

What is deterministic without it: the data (batch ``s`` is a function of (seed, s) alone, drawn by any number of
prefetch threads; ``train.prefetch`` cannot change a batch), the model's initialisation (``torch.manual_seed(seed)``
on the CPU, then moved), and statetrack's own Triton kernels (block sizes chosen by rule from the shapes and the
SM count, never by timing; no atomics: split reductions write per-block shares that torch sums).

Cost: see docs/reproduce.md ("Same key, same result"). Not covered: other GPU models, driver, CUDA, torch or
Triton versions (cuBLAS and the compiled kernels may change), and a GPU whose visible SM count changes between
runs (MIG slices, an MPS active-thread limit): kernel block sizes follow the SM count.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import torch

CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_WORKSPACE = ":4096:8"  # 8 buffers of 4 MiB per stream: the larger of the two settings cuBLAS documents


def set_process_env() -> None:
    """Set the environment deterministic CUDA needs before CUDA starts in this process (and in processes it
    spawns afterwards): ``CUBLAS_WORKSPACE_CONFIG``, unless the caller set it already."""
    os.environ.setdefault(CUBLAS_ENV, CUBLAS_WORKSPACE)


@contextlib.contextmanager
def deterministic(enabled: bool = True) -> Iterator[None]:
    """Within the block, torch runs deterministically (see the module docstring); the previous settings come
    back afterwards. ``enabled=False`` changes nothing."""
    if not enabled:
        yield
        return
    late = CUBLAS_ENV not in os.environ and torch.cuda.is_available() and torch.cuda.is_initialized()
    set_process_env()
    if late:
        warnings.warn(
            f"train.deterministic: {CUBLAS_ENV} was set after CUDA started in this process; cuBLAS handles made "
            f"before keep their workspace. Set {CUBLAS_ENV}={CUBLAS_WORKSPACE} before the process starts.",
            stacklevel=3,
        )
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    torch.use_deterministic_algorithms(True, warn_only=False)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2], saved[3]


def refusals(cfg) -> list[str]:
    """Why the experiment ``cfg`` cannot train deterministically (one phrase per reason; empty = it can)."""
    out = []
    backend = getattr(cfg.model.mixer_settings, "backend", None)
    if backend == "fla":
        out.append(
            "model.settings.backend = 'fla': flash-linear-attention's kernels pick their block sizes by timing "
            "(Triton autotune), which can change the result from one process to the next; use 'auto' or 'triton'"
        )
    return out
