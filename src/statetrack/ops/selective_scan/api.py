"""Public entry points: ``selective_scan`` (whole sequences) and ``selective_scan_step`` (one token)."""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import (
    check_min_eigenvalue,
    refuse_off_path,
    require_float,
    require_range,
    require_same_device,
    require_shape,
    require_state,
    state_dtype,
)
from .._triton import sm_count
from ..backends import choose_backend
from ..diag_scan.scan import default_chunk_size
from .chunk import selective_scan_chunk
from .naive import selective_scan_naive, selective_step
from .triton import STEPS_KEYS, TILES_KEYS, pick_algorithm, selective_scan_triton


def _check_selective(u, delta, A, B, C, D, z, state, state_name: str, with_time: bool) -> torch.dtype:
    """Validate; returns the state dtype. Shapes with the time axis when ``with_time``, else without."""
    for name, x in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C)):
        require_float(name, x)
    for name, x in (("D", D), ("z", z)):
        if x is not None:
            require_float(name, x)
    if with_time:
        require_shape("u", u, (None, None, None), "[Bt, T, Dm]")
        Bt, T, Dm = u.shape
        lead, lead_letters = (Bt, T), "Bt, T"
    else:
        require_shape("u", u, (None, None), "[Bt, Dm]")
        Bt, Dm = u.shape
        lead, lead_letters = (Bt,), "Bt"
    require_shape("A", A, (Dm, None), f"[Dm, N] (Dm = {Dm} from u)")
    N = A.shape[1]
    require_shape("delta", delta, (*lead, Dm), f"[{lead_letters}, Dm] (the shape of u)")
    require_shape("B", B, (*lead, N), f"[{lead_letters}, N] (N = {N} from A)")
    require_shape("C", C, (*lead, N), f"[{lead_letters}, N] (N = {N} from A)")
    if D is not None:
        require_shape("D", D, (Dm,), "[Dm]")
    if z is not None:
        require_shape("z", z, (*lead, Dm), f"[{lead_letters}, Dm] (the shape of u)")
    require_same_device(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, **{state_name: state})
    sdt = state_dtype(u.dtype)
    require_state(state_name, state, (Bt, Dm, N), "[Bt, Dm, N]", sdt)
    # delta >= 0 and A <= 0 put exp(delta A) in (0, 1], hence a in [min_eigenvalue, 1]
    require_range("delta", delta, 0.0, None)
    require_range("A", A, None, 0.0)
    return sdt


def _cast(tensors, dtype: torch.dtype, only_fp64: bool = False) -> list:
    """Each tensor (None stays None) in ``dtype``; with ``only_fp64`` just the fp64 ones."""
    return [x if x is None or (only_fp64 and x.dtype != torch.float64) else x.to(dtype) for x in tensors]


def selective_scan(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, *, D: Tensor | None = None, z: Tensor | None = None,
    min_eigenvalue: float = -1.0, initial_state: Tensor | None = None, output_final_state: bool = False,
    backend: str = "auto", algorithm: str = "auto", chunk_size: int | None = None, triton_config: dict | None = None,
) -> tuple[Tensor, Tensor | None]:  # fmt: skip
    """Mamba-1 selective scan with decays in [min_eigenvalue, 1], time-major.

    Per channel d and state index n: a = m + (1 - m) exp(delta_t A), h_t = a * h_{t-1} + delta_t u_t B_t,
    y_t = C_t . h_t + D u_t, times silu(z_t) if z is given. m = min_eigenvalue: 0 is the original Mamba,
    -1 the paper's [-1, 1] Mamba (a = 2 exp(delta A) - 1). The input term is not rescaled.

    Args:
        u: [Bt, T, Dm] inputs. Its dtype sets the output dtype and the state dtype (fp32, fp64 for fp64).
        delta: [Bt, T, Dm] step sizes, >= 0 (e.g. softplus of a projection; checked unless value checks are off).
        A: [Dm, N] state matrix, <= 0 (A = -exp(A_log)).
        B, C: [Bt, T, N] input and output projections.
        D: [Dm] skip connection, or None.
        z: [Bt, T, Dm] gate, or None.
        min_eigenvalue: float in [-1, 0].
        initial_state: [Bt, Dm, N] in the state dtype; zeros if None.
        output_final_state: also return the final state [Bt, Dm, N].
        backend: "auto" (triton on CUDA unless u is fp64, else torch) | "naive" (the loop, the oracle) | "torch"
            (the chunked diagonal scan) | "triton" (fused kernels, fp32 state in registers; CUDA, or CPU tensors
            under TRITON_INTERPRET=1).
        algorithm: the triton backend's kernels: "tiles" (parallel along time in tiles: a few long sequences),
            "steps" (one step at a time, parallel across sequences and channels: many short ones) or "auto":
            steps where there are at least 16 (sequence, block of channels) work items per multiprocessor of the
            GPU, else tiles (tiles under the interpreter). The other backends have one algorithm each: only
            "auto" there.
        chunk_size: tokens per chunk of the "torch" backend (changes rounding only); None picks one from T, the
            lanes and the device (``diag_scan.scan.default_chunk_size``). Only for the torch backend.
        triton_config: tuning of the triton backend (only there), a dict of: for "tiles", block_t, block_d
            (forward tile: steps, channels), block_t_bwd, block_d_bwd (backward tile), checkpoint (steps between
            saved states), warps_fwd, warps_bwd, stages_fwd, stages_bwd; for "steps", block_d_steps (channels per
            work item), checkpoint_steps, warps_steps, programs_per_sm, prefetch_steps (bool), unroll_steps. Keys
            of the algorithm not chosen raise. None: the defaults of ``triton.config.selective_config``.

    Returns:
        (y [Bt, T, Dm] in u's dtype, final state [Bt, Dm, N] or None).
    """
    sdt = _check_selective(u, delta, A, B, C, D, z, initial_state, "initial_state", with_time=True)
    min_eigenvalue = check_min_eigenvalue(min_eigenvalue)
    name, config = choose_backend(backend, u.device, u.dtype, chunk_size=chunk_size, triton_config=triton_config,
                                  triton_keys=TILES_KEYS + STEPS_KEYS)  # fmt: skip
    Bt, T, Dm = u.shape
    N = A.shape[1]
    if name == "triton":
        algorithm = pick_algorithm(algorithm, Bt, Dm, N, sm_count(u.device), config)
    else:
        refuse_off_path("algorithm", algorithm, f"backend={name!r}", "backend='triton'")
    if name == "triton" and T == 0:
        name = "torch"  # nothing to launch; the torch path returns the initial state with its gradient wired
    tensors = (u, delta, A, B, C, D, z)
    if name == "naive":
        y, final = selective_scan_naive(*tensors, min_eigenvalue, initial_state, sdt)
    elif name == "triton":
        # the kernels compute in fp32, the state dtype of non-fp64 u: fp64 companions are cast, as the torch path does
        y, final = selective_scan_triton(*_cast(tensors, torch.float32, only_fp64=True), min_eigenvalue,
                                         initial_state, algorithm=algorithm, **config)  # fmt: skip
    else:
        c = chunk_size or default_chunk_size(T, Bt * Dm * N, u.device)
        y, final = selective_scan_chunk(*_cast(tensors, sdt), min_eigenvalue, initial_state, c)
    return y.to(u.dtype), (final if output_final_state else None)


def selective_scan_step(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, state: Tensor | None = None, *,
    D: Tensor | None = None, z: Tensor | None = None, min_eigenvalue: float = -1.0,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """One decoding token of :func:`selective_scan`, continuing from its final state.

    u, delta, z [Bt, Dm]; A [Dm, N]; B, C [Bt, N]; D [Dm]; state [Bt, Dm, N] in the state dtype (zeros if None).
    Returns (y [Bt, Dm] in u's dtype, new state [Bt, Dm, N]).
    """
    sdt = _check_selective(u, delta, A, B, C, D, z, state, "state", with_time=False)
    min_eigenvalue = check_min_eigenvalue(min_eigenvalue)
    if state is None:
        state = u.new_zeros(u.shape[0], u.shape[1], A.shape[1], dtype=sdt)
    y, state = selective_step(*_cast((u, delta, A, B, C, D, z), sdt), min_eigenvalue, state)
    return y.to(u.dtype), state
