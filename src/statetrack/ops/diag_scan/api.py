"""Public entry points: ``diag_scan`` / ``diag_scan_step`` (signed diagonal recurrence) and
``selective_scan`` / ``selective_scan_step`` (Mamba-1's scan with eigenvalues in [min_eigenvalue, 1])."""

from __future__ import annotations

import math
import numbers

import torch

from .._checks import (
    require_float,
    require_range,
    require_same_device,
    require_shape,
    require_state,
    resolve_backend,
    state_dtype_for,
    value_checks_enabled,
)
from .naive import diag_scan_naive, selective_scan_naive
from .scan import default_chunk_size, diag_scan_chunk
from .selective import selective_scan_chunk, selective_step
from .triton import diag_scan_triton, interpreter_requested, selective_scan_triton, triton_installed

BACKENDS = ("naive", "torch", "triton")


def _available(device: torch.device, dtype: torch.dtype | None = None) -> dict[str, bool]:
    """Backends that can run on ``device`` for inputs of ``dtype`` (the promoted input dtype): the Triton kernels run
    compiled on CUDA tensors (on other devices only under Triton's interpreter, for tests) and compute in fp32, so
    fp64 inputs stay on the torch paths."""
    triton_ok = triton_installed() and (device.type == "cuda" or interpreter_requested()) and dtype != torch.float64
    return {"naive": True, "torch": True, "triton": triton_ok}


def _auto_order(device: torch.device) -> tuple[str, ...]:
    # On CPU the interpreter is only a test harness; the chunked torch path is the fast one there.
    return ("triton", "torch", "naive") if device.type == "cuda" else ("torch", "naive")


def _check_chunk_size(chunk_size) -> None:
    if chunk_size is None:
        return
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")


def _require_range(name: str, x: torch.Tensor, lo: float | None, hi: float | None) -> None:
    """:func:`require_range` behind a one-pass test: min and max in range (NaN fails it) means nothing to report.

    The full check builds several boolean tensors of x's size; at [8, 2048, 1024] it costs more than the scan."""
    if not value_checks_enabled() or x.numel() == 0:
        return
    mn, mx = (float(v) for v in torch.aminmax(x.detach()))
    if math.isfinite(mn) and math.isfinite(mx) and (lo is None or mn >= lo) and (hi is None or mx <= hi):
        return
    require_range(name, x, lo, hi)  # raises, naming the argument and an offending value


def _check_min_eigenvalue(m) -> float:
    if isinstance(m, bool) or not isinstance(m, numbers.Real):
        raise TypeError(f"min_eigenvalue must be a real number in [-1, 0], got {type(m).__name__}")
    m = float(m)
    if not (-1.0 <= m <= 0.0):
        raise ValueError(f"min_eigenvalue must lie in [-1, 0] (0 = original Mamba, -1 = the paper's [-1, 1]), got {m}")
    return m


# ----------------------------------------------------------------------------------------------- diag_scan


def _check_diag(a, b, state, state_name: str, with_time: bool):
    require_float("a", a)
    require_float("b", b)
    lead = "[B, T, ...]" if with_time else "[B, ...]"
    if a.dim() < (2 if with_time else 1):
        raise ValueError(f"a must have shape {lead}, got {list(a.shape)}")
    if b.shape != a.shape:
        raise ValueError(f"b must have the shape of a, {lead} = {list(a.shape)}, got {list(b.shape)}")
    require_same_device(a=a, b=b, **{state_name: state})
    out_dtype = torch.promote_types(a.dtype, b.dtype)
    sdt = state_dtype_for(out_dtype)
    state_shape = a.shape[:1] + a.shape[2:] if with_time else a.shape
    require_state(state_name, state, tuple(state_shape), "[B, ...] (a without its time axis)", sdt)
    _require_range("a", a, -1.0, 1.0)
    return out_dtype, sdt


def diag_scan(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    backend: str = "auto",
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Signed diagonal linear recurrence h_t = a_t * h_{t-1} + b_t (elementwise), a_t in [-1, 1].

    Negative, zero and unit decays are exact: decays are multiplied, never divided or logged.

    Args:
        a: [B, T, ...] decays in [-1, 1] (checked unless value checks are off); any trailing dims.
        b: [B, T, ...] inputs, same shape as a. a and b may differ in float dtype; the output takes the
            promoted one.
        initial_state: [B, ...] h_{-1} in the state dtype (fp32, or fp64 for fp64 inputs); zeros if None.
        output_final_state: also return h_{T-1} [B, ...] in the state dtype.
        backend: "auto" (triton on CUDA for bf16/fp16/fp32, else torch) | "naive" (sequential loop, the oracle)
            | "torch" (chunked, hand-written backward) | "triton" (fused Triton kernels, fp32 accumulation; CUDA
            tensors, or CPU tensors under TRITON_INTERPRET=1; not for fp64).
        chunk_size: steps per chunk of the "torch" backend (changes rounding only); None picks one from
            T, the number of lanes and the device (see ``scan.default_chunk_size``). Ignored by the others.

    Returns:
        (h [B, T, ...] in the promoted input dtype, final state [B, ...] or None).
    """
    out_dtype, sdt = _check_diag(a, b, initial_state, "initial_state", with_time=True)
    _check_chunk_size(chunk_size)
    name = resolve_backend(backend, _available(a.device, out_dtype), a.device, _auto_order(a.device))
    B, T = a.shape[:2]
    if name == "triton" and T == 0:
        name = "torch"  # nothing to launch; the torch path returns the initial state with its gradient wired
    if name == "naive":
        h, final = diag_scan_naive(a, b, initial_state, sdt)
    else:
        rest = a.shape[2:]
        D = math.prod(rest)
        init = None if initial_state is None else initial_state.reshape(B, D)
        if name == "triton":
            h, final = diag_scan_triton(a.reshape(B, T, D), b.reshape(B, T, D), init)
        else:
            c = chunk_size or default_chunk_size(T, B * D, a.device)
            h, final = diag_scan_chunk(a.to(sdt).reshape(B, T, D), b.to(sdt).reshape(B, T, D), init, c)
        h, final = h.view(a.shape), final.view(B, *rest)
    return h.to(out_dtype), (final if output_final_state else None)


def diag_scan_step(
    a: torch.Tensor, b: torch.Tensor, state: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of :func:`diag_scan`: h = a * state + b, continuing from its final state.

    a, b [B, ...]; state [B, ...] in the state dtype (zeros if None). Returns (h in the promoted input dtype,
    new state in the state dtype); both hold the same values.
    """
    out_dtype, sdt = _check_diag(a, b, state, "state", with_time=False)
    if state is None:
        state = a.new_zeros(a.shape, dtype=sdt)
    new = torch.addcmul(b.to(sdt), a.to(sdt), state)
    return new.to(out_dtype), new


# ------------------------------------------------------------------------------------------ selective_scan


def _check_selective(u, delta, A, B, C, D, z, state, state_name: str, with_time: bool):
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
    sdt = state_dtype_for(u.dtype)
    require_state(state_name, state, (Bt, Dm, N), "[Bt, Dm, N]", sdt)
    # delta >= 0 and A <= 0 put exp(delta A) in (0, 1], hence a in [min_eigenvalue, 1]
    _require_range("delta", delta, 0.0, None)
    _require_range("A", A, None, 0.0)
    return sdt


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    *,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    min_eigenvalue: float = -1.0,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    backend: str = "auto",
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
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
        backend: "auto" (triton on CUDA unless u is fp64, else torch) | "naive" | "torch" | "triton" (one fused
            Triton kernel per direction, state in registers; CUDA, or CPU under TRITON_INTERPRET=1).
        chunk_size: steps per chunk of the "torch" backend; None picks one (as in :func:`diag_scan`).

    Returns:
        (y [Bt, T, Dm] in u's dtype, final state [Bt, Dm, N] or None).
    """
    sdt = _check_selective(u, delta, A, B, C, D, z, initial_state, "initial_state", with_time=True)
    m = _check_min_eigenvalue(min_eigenvalue)
    _check_chunk_size(chunk_size)
    name = resolve_backend(backend, _available(u.device, u.dtype), u.device, _auto_order(u.device))
    if name == "triton" and u.shape[1] == 0:
        name = "torch"  # nothing to launch (as in diag_scan)
    if name == "naive":
        y, final = selective_scan_naive(u, delta, A, B, C, D, z, m, initial_state, sdt)
    elif name == "triton":
        # the kernels compute in fp32, the state dtype of non-fp64 u: fp64 companions are cast, as the torch path does
        f32 = lambda x: x.float() if x is not None and x.dtype == torch.float64 else x  # noqa: E731
        y, final = selective_scan_triton(*(f32(x) for x in (u, delta, A, B, C, D, z)), m, initial_state)
    else:
        cast = lambda x: None if x is None else x.to(sdt)  # noqa: E731
        Bt, T, Dm = u.shape
        c = chunk_size or default_chunk_size(T, Bt * Dm * A.shape[1], u.device)
        y, final = selective_scan_chunk(*(cast(x) for x in (u, delta, A, B, C, D, z)), m, initial_state, c)
    return y.to(u.dtype), (final if output_final_state else None)


def selective_scan_step(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    state: torch.Tensor | None = None,
    *,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    min_eigenvalue: float = -1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One decoding token of :func:`selective_scan`, continuing from its final state.

    u, delta, z [Bt, Dm]; A [Dm, N]; B, C [Bt, N]; D [Dm]; state [Bt, Dm, N] in the state dtype (zeros if None).
    Returns (y [Bt, Dm] in u's dtype, new state [Bt, Dm, N]).
    """
    sdt = _check_selective(u, delta, A, B, C, D, z, state, "state", with_time=False)
    m = _check_min_eigenvalue(min_eigenvalue)
    if state is None:
        state = u.new_zeros(u.shape[0], u.shape[1], A.shape[1], dtype=sdt)
    cast = lambda x: None if x is None else x.to(sdt)  # noqa: E731
    y, state = selective_step(*(cast(x) for x in (u, delta, A, B, C, D, z)), m, state)
    return y.to(u.dtype), state
