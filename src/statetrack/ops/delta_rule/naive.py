"""Sequential reference of the (gated, multi-Householder) delta rule: the oracle for every faster path.

Per head, with state S in R^{K x V}, for each token t and Householder step j = 1..n_h:
    S <- g_t * S                                   (once per token, before the writes)
    S <- S - beta_tj k_tj (k_tj^T S) + beta_tj k_tj v_tj^T
    o_t = scale * S^T q_t
Inputs here are already validated and normalised: k [B, T, n_h, H, K], v [B, T, n_h, H, V], beta [B, T, n_h, H].
"""

from __future__ import annotations

import torch


def delta_rule_step_core(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    log_decay: torch.Tensor | None,
    state: torch.Tensor,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token. q [B, H, K]; k [B, n_h, H, K]; v [B, n_h, H, V]; beta [B, n_h, H]; log_decay [B, H] or None;
    state [B, H, K, V] in the compute dtype. Returns (o [B, H, V], new state), both in the state dtype."""
    dtype = state.dtype
    if log_decay is not None:
        state = state * log_decay.to(dtype).exp()[..., None, None]
    for j in range(k.shape[1]):
        kj, vj, bj = k[:, j].to(dtype), v[:, j].to(dtype), beta[:, j].to(dtype)
        # (I - b k k^T) S + b k v^T  ==  S + b k (v - S^T k)^T
        err = vj - torch.einsum("bhkv,bhk->bhv", state, kj)
        state = state + torch.einsum("bhk,bhv->bhkv", kj * bj[..., None], err)
    o = torch.einsum("bhkv,bhk->bhv", state, q.to(dtype)) * scale
    return o, state


def delta_rule_naive(q, k, v, beta, log_decay, scale, initial_state, state_dtype):
    """q [B, T, H, K] ... -> (o [B, T, H, V] in state dtype, final state [B, H, K, V])."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    if initial_state is None:
        state = q.new_zeros(B, H, K, V, dtype=state_dtype)
    else:
        state = initial_state
    outs = []
    # unbind once: slicing x[:, t] inside the loop would make autograd build a full-size zero gradient per step
    steps = zip(
        q.unbind(1),
        k.unbind(1),
        v.unbind(1),
        beta.unbind(1),
        [None] * T if log_decay is None else log_decay.unbind(1),
        strict=True,
    )
    for q_t, k_t, v_t, b_t, g_t in steps:
        o, state = delta_rule_step_core(q_t, k_t, v_t, b_t, g_t, state, scale)
        outs.append(o)
    o = torch.stack(outs, dim=1) if outs else q.new_zeros(B, 0, H, V, dtype=state_dtype)
    return o, state
