"""The inputs of ``delta_rule``: validation, and the one internal layout every path takes (a Householder axis)."""

from __future__ import annotations

from .. import _checks as checks


def normalize(q, k, v, beta, log_decay, initial_state, cu_seqlens):
    """Validate every input of ``delta_rule`` (shapes, dtypes, devices, ranges; ValueError/TypeError naming the
    argument) and bring k, v, beta to the multi-Householder layout k [B, T, n_h, H, K], v [B, T, n_h, H, V],
    beta [B, T, n_h, H] (n_h = 1 for DeltaNet's [B, T, H, .]). Returns (k, v, beta, state dtype)."""
    for name, x in (("q", q), ("k", k), ("v", v), ("beta", beta)):
        checks.require_float(name, x)
    if log_decay is not None:
        checks.require_float("log_decay", log_decay)
    checks.require_shape("q", q, (None, None, None, None), "[B, T, H, K]")
    B, T, H, K = q.shape
    if k.dim() == 4:
        n_h = 1
        checks.require_shape("k", k, (B, T, H, K), "[B, T, H, K] (same B, T, H, K as q)")
        checks.require_shape("v", v, (B, T, H, None), "[B, T, H, V]")
        checks.require_shape("beta", beta, (B, T, H), "[B, T, H]")
        k, v, beta = k[:, :, None], v[:, :, None], beta[:, :, None]
    elif k.dim() == 5:
        n_h = k.shape[2]
        checks.require_shape("k", k, (B, T, n_h, H, K), "[B, T, n_h, H, K] (same B, T, H, K as q)")
        checks.require_shape("v", v, (B, T, n_h, H, None), "[B, T, n_h, H, V]")
        checks.require_shape("beta", beta, (B, T, n_h, H), "[B, T, n_h, H]")
    else:
        raise ValueError(f"k must have shape [B, T, H, K] or [B, T, n_h, H, K], got {list(k.shape)}")
    if n_h < 1:
        raise ValueError("k must have n_h >= 1 Householder steps per token")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k and v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if log_decay is not None:
        checks.require_shape("log_decay", log_decay, (B, T, H), "[B, T, H]")
    checks.require_same_device(q=q, k=k, v=v, beta=beta, log_decay=log_decay, initial_state=initial_state)
    N = checks.require_cu_seqlens(cu_seqlens, B, T)
    sdtype = checks.state_dtype(q.dtype)
    checks.require_state("initial_state", initial_state, (N, H, K, v.shape[-1]), "[N, H, K, V]", sdtype)
    checks.require_range("beta", beta, 0.0, 2.0)
    if log_decay is not None:
        checks.require_range("log_decay", log_decay, None, 0.0)
    return k, v, beta, sdtype
