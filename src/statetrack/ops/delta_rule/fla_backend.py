"""Adapter to flash-linear-attention's chunked kernels (``backend="fla"``), for side-by-side comparisons.

fla is not a dependency; this module imports it lazily. It needs CUDA and bf16/fp16 inputs for the ungated and
product kernels. Layout conversion: our DeltaProduct [B, T, n_h, H, D] is fla's interleaved [B, T * n_h, H, D].
"""

from __future__ import annotations

import torch

from .._triton import module_installed


def fla_available(device: torch.device) -> bool:
    return device.type == "cuda" and module_installed("fla")


def delta_rule_fla(q, k, v, beta, log_decay, scale, initial_state, output_final_state, cu_seqlens):
    """Same arguments as the normalised internal call: k [B, T, n, H, K], v [B, T, n, H, V], beta [B, T, n, H]."""
    B, T, n, H, K = k.shape
    if n == 1 and log_decay is None:
        from fla.ops.delta_rule import chunk_delta_rule

        return chunk_delta_rule(
            q,
            k[:, :, 0],
            v[:, :, 0],
            beta[:, :, 0].to(q.dtype),
            scale=scale,
            initial_state=initial_state,
            output_final_state=output_final_state,
            cu_seqlens=cu_seqlens,
        )
    g = log_decay if log_decay is not None else q.new_zeros(B, T, H, dtype=torch.float32)
    if n == 1:
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule

        return chunk_gated_delta_rule(
            q,
            k[:, :, 0],
            v[:, :, 0],
            g.float(),
            beta[:, :, 0].to(q.dtype),
            scale=scale,
            initial_state=initial_state,
            output_final_state=output_final_state,
            cu_seqlens=cu_seqlens,
        )
    from fla.ops.gated_delta_product import chunk_gated_delta_product

    return chunk_gated_delta_product(
        q,
        k.flatten(1, 2),
        v.flatten(1, 2),
        g.float(),
        beta.flatten(1, 2).to(q.dtype),
        num_householder=n,
        scale=scale,
        initial_state=initial_state,
        output_final_state=output_final_state,
        cu_seqlens=cu_seqlens,
    )
