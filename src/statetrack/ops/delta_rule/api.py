"""Public entry points of the delta rule: ``delta_rule`` (a whole sequence) and ``delta_rule_step`` (one token)."""

from __future__ import annotations

import contextlib

import torch

from .._varlen import Varlen
from ..backends import available_backends
from ..state_updates import states_in_place
from .chunk import default_chunk_size, delta_rule_chunk
from .fla_backend import delta_rule_fla, fla_available
from .inputs import normalize
from .naive import delta_rule_naive, delta_rule_step_core
from .paths import choose_path
from .triton import auto_precision, delta_rule_recurrent_triton, delta_rule_triton, prefers_recurrent


def _available(device: torch.device, dtype: torch.dtype | None = None) -> dict[str, bool]:
    return {**available_backends(device, dtype), "fla": fla_available(device)}


def _no_autocast(device_type: str):
    """Autocast off for the state algebra (fp32, or fp64, by contract), entered only where it is on (entering
    costs host time on every call)."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def _longest(cu_seqlens: torch.Tensor) -> int:
    """Length of the longest packed sequence (a host read of cu_seqlens)."""
    return int((cu_seqlens[1:] - cu_seqlens[:-1]).max()) if cu_seqlens.numel() > 1 else 0


def delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    *,
    log_decay: torch.Tensor | None = None,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    backend: str = "auto",
    algorithm: str = "auto",
    chunk_size: int | None = None,
    precision: str = "auto",
    triton_config: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gated multi-Householder delta rule (DeltaNet, Gated DeltaNet, DeltaProduct) over whole sequences.

    Per head, state S in R^{K x V}; for each token t: S <- g_t S, then for j = 1..n_h
    S <- (I - beta_tj k_tj k_tj^T) S + beta_tj k_tj v_tj^T; output o_t = scale * S^T q_t.
    The eigenvalue of a factor along k is 1 - beta |k|^2, so unit keys and beta in [0, 2] give [-1, 1].

    Args:
        q: [B, T, H, K] queries.
        k: [B, T, H, K] keys, or [B, T, n_h, H, K] for n_h Householder steps per token (DeltaProduct).
            Used as given: L2-normalise them yourself for unit-norm reflections.
        v: [B, T, H, V] or [B, T, n_h, H, V] values. q, k, v share a dtype (bf16, fp16, fp32 or fp64).
        beta: [B, T, H] or [B, T, n_h, H], in [0, 2].
        log_decay: [B, T, H], log g_t <= 0 (Gated DeltaNet); None means g_t = 1.
        scale: output scale, default K ** -0.5.
        initial_state: [N, H, K, V] in the state dtype (fp32, or fp64 for fp64 inputs); N = B, or the number
            of sequences with ``cu_seqlens``.
        output_final_state: also return the final state [N, H, K, V].
        cu_seqlens: [N + 1] int offsets of packed sequences in a B = 1 batch (FlashAttention convention).
        backend: "naive" (the sequential loop), "torch" (chunked, PyTorch), "triton" (kernels: CUDA, or CPU under
            TRITON_INTERPRET=1; not fp64), "fla" (flash-linear-attention's chunked kernels, if installed) or
            "auto": the first available of "triton", "torch", "naive" on CUDA and of "torch", "naive" elsewhere,
            skipping those that lack an explicitly named ``algorithm``.
        algorithm: "recurrent" (token by token: naive, triton) or "chunk" (chunk-parallel: torch, triton, fla), or
            "auto": the backend's only one; for "triton" the one that an explicit ``chunk_size`` / ``precision``
            (chunk) or ``triton_config`` key (either) belongs to, else "recurrent" for sequences (the longest,
            with ``cu_seqlens``) of at most 256 tokens x n_h, or 1024 when N x H >= 1024, and "chunk" beyond
            (``triton.prefers_recurrent``; docs/kernels.md, "Which path runs").
        chunk_size: tokens per chunk of the "chunk" algorithm of "torch" (None: 32 for CPU inputs, 64 on other
            devices) and "triton" (chunk_size * n_h <= 64; None: 64 // n_h). Any chunk size gives the same
            result up to rounding.
        precision: how the "triton" chunk kernels multiply fp32 tiles on tensor cores: "auto" ("bf16" for bf16 inputs
            with one Householder per token on a GPU with 64-row chunks and the bf16 blocks untouched, else "tf32x3":
            ``triton.auto_precision``), "tf32x3" (three tf32 passes, fp32-accurate: o at the bf16 rounding floor even at
            beta near 2), "tf32" (one pass: ~1.6x faster forward+backward at head dim 128 on an H100, about fla's
            accuracy), "ieee" (fp32 FMA, ~2x slower) or "bf16" (bf16 passes with fp32 sums; the inverse and the state
            recursion in split bf16 passes, about fp32-accurate: o within 5e-3 and gradients within 8e-3 at beta near 2,
            also with repeated keys; with bf16 inputs o 2.3e-3 and gradients <= 4.1e-3 at head dims 64 (H200) and 128
            (H100). On GPUs it takes bf16/fp16 inputs and 64-row chunks only: other cases miscompile on sm_90;
            docs/kernels.md, "The bf16 precision"). The other paths compute in fp32 (fp64) throughout.
        triton_config: block settings of the "triton" kernels, for tuning and benchmarks (None: chosen per
            shape and device). Algorithm "chunk" (``triton.CHUNK_TUNING``): "block_v" (a cap on every V-block
            width), "BS" (diagonal block of the inverse), "BK", "BK_grad" (K-blocks), "BV_prep", "BV_sfwd",
            "BV_out", "BV_sbwd", "BV_grad" (V-blocks per kernel; BV_grad >= 32), "warps_prep", "warps_state",
            "warps_out", "warps_grad", "stages_state". Algorithm "recurrent" (``triton.RECURRENT_TUNING``):
            "BT" (tokens loaded at once), "BV" (V-block), "warps". Widths and warps are powers of two.

    Returns:
        (o [B, T, H, V] in q's dtype, final state [N, H, K, V] or None).

    Raises ValueError naming the argument for a backend or algorithm that is not available, and for an explicit
    ``chunk_size``, ``precision`` or ``triton_config`` that the chosen path does not have.
    """
    k, v, beta, sdtype = normalize(q, k, v, beta, log_decay, initial_state, cu_seqlens)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)

    def short() -> bool:  # asked only when it decides: with cu_seqlens it reads the lengths on the host
        longest = q.shape[1] if cu_seqlens is None else _longest(cu_seqlens)
        n_seq = q.shape[0] if cu_seqlens is None else cu_seqlens.numel() - 1
        return prefers_recurrent(longest * k.shape[2], k.shape[-1], n_seq * q.shape[2])

    available = _available(q.device, q.dtype)

    def auto_prec() -> str:
        return auto_precision(q.dtype, q.device, k.shape[2], chunk_size, triton_config)

    path = choose_path(backend, algorithm, chunk_size, precision, triton_config, available, q.device, short,
                       auto_prec)  # fmt: skip
    if path.backend == "fla":  # fla handles cu_seqlens itself
        o, final = delta_rule_fla(q, k, v, beta, log_decay, scale, initial_state, output_final_state, cu_seqlens)
        return o, (final if output_final_state else None)
    if path.backend == "triton" and path.algorithm == "recurrent":  # handles cu_seqlens itself
        with _no_autocast(q.device.type):
            o, final = delta_rule_recurrent_triton(
                q, k, v, beta, log_decay, scale, initial_state, cu_seqlens, config=triton_config
            )
        return o, (final if output_final_state else None)

    varlen = Varlen(cu_seqlens, q.device) if cu_seqlens is not None else None
    if varlen is not None:
        q, k, v, beta, log_decay = (varlen.pad(x) for x in (q, k, v, beta, log_decay))

    # the state algebra is fp32 (fp64) by contract: autocast must not lower it to bf16
    with _no_autocast(q.device.type):
        if path.backend == "naive":
            o, final = delta_rule_naive(q, k, v, beta, log_decay, scale, initial_state, sdtype)
        elif path.backend == "triton":
            o, final = delta_rule_triton(
                q, k, v, beta, log_decay, scale, initial_state, chunk_size=chunk_size, precision=path.precision,
                config=triton_config,
            )  # fmt: skip
        else:
            chunk = default_chunk_size(q.device) if chunk_size is None else chunk_size
            o, final = delta_rule_chunk(q, k, v, beta, log_decay, scale, initial_state, sdtype, chunk)

    if varlen is not None:
        o = varlen.unpad(o)
    return o.to(q.dtype), (final if output_final_state else None)


def delta_rule_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    state: torch.Tensor | None = None,
    *,
    log_decay: torch.Tensor | None = None,
    scale: float | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One decoding token, continuing exactly where :func:`delta_rule` left its final state.

    Shapes are those of :func:`delta_rule` without the time axis: q [B, H, K]; k [B, H, K] or [B, n_h, H, K];
    v [B, H, V] or [B, n_h, H, V]; beta [B, H] or [B, n_h, H]; log_decay [B, H]; state [B, H, K, V] (zeros if
    None). Returns (o [B, H, V] in q's dtype, new state [B, H, K, V]).

    ``backend``: "torch" (a few elementwise ops and contractions), "triton" (the fused recurrent kernel with T = 1:
    one launch, which is what a CUDA-graphed decoding step of many layers is bound by), or "auto": triton where
    its kernels run on the inputs (CUDA, not fp64), else torch. Inside :func:`statetrack.ops.update_states_in_place`
    the triton path writes the new state over ``state`` and returns it.
    """
    if backend not in ("auto", "torch", "triton"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'triton', got {backend!r}")
    for name, x in (("q", q), ("k", k), ("v", v), ("beta", beta), ("log_decay", log_decay)):
        if isinstance(x, torch.Tensor) and x.dim() == 0:
            raise ValueError(f"{name} must not be a scalar")
    add_t = lambda x: None if x is None else (x[:, None] if isinstance(x, torch.Tensor) else x)  # noqa: E731
    qt, kt, vt, bt, gt = (add_t(x) for x in (q, k, v, beta, log_decay))
    if isinstance(state, torch.Tensor) and state.dim() >= 1 and isinstance(q, torch.Tensor) and q.dim() >= 1:
        if state.shape[0] != q.shape[0]:
            raise ValueError(f"state must have shape [B, H, K, V] with B = {q.shape[0]}, got {list(state.shape)}")
    kt, vt, bt, sdtype = normalize(qt, kt, vt, bt, gt, state, None)
    B, _, H, K = qt.shape
    scale = K**-0.5 if scale is None else float(scale)
    if state is None:
        state = qt.new_zeros(B, H, K, vt.shape[-1], dtype=sdtype)
    can_triton = available_backends(qt.device, qt.dtype)["triton"] and state.dtype == torch.float32
    if backend == "triton" and not can_triton:
        raise ValueError(f"backend='triton' needs CUDA (or TRITON_INTERPRET=1) inputs that are not fp64 and an fp32 "
                         f"state, got {qt.device.type} {qt.dtype} inputs and a {state.dtype} state")  # fmt: skip
    with _no_autocast(qt.device.type):
        if backend == "triton" or (backend == "auto" and can_triton):
            out = state if states_in_place(state, torch.float32) else None
            o, new = delta_rule_recurrent_triton(qt, kt, vt, bt, gt, scale, state, final_state=out)
            return o[:, 0].to(q.dtype), new if out is None else out  # (autograd.Function hands back a view of it)
        o, state = delta_rule_step_core(
            qt[:, 0], kt[:, 0], vt[:, 0], bt[:, 0], None if gt is None else gt[:, 0], state, scale
        )
    return o.to(q.dtype), state
