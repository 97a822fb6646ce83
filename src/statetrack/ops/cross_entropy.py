"""Fused LM head + cross-entropy that never holds the logits of all N rows at once.

Shape letters: N rows (tokens, batch and time flattened), D hidden size, V vocabulary size.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re

import torch

from ._checks import require_chunk_size, require_float, require_same_device, require_shape, value_checks_enabled

_REDUCTIONS = ("mean", "sum", "none")
_BACKENDS = ("auto", "torch", "liger")
_CHUNK_BYTES = 256 * 2**20  # the default chunk's logits (fp32, or fp64 for fp64 inputs) stay within this
_MM_OUT_DTYPE = hasattr(torch.ops.aten.mm, "dtype")  # this torch has torch.mm(..., out_dtype=) (its kernels: CUDA)


def _mm(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype, into: torch.Tensor | None = None) -> torch.Tensor:
    """a @ b as ``dtype`` (added into ``into`` if given); on CUDA bf16/fp16 operands write fp32 straight from the
    GEMM's accumulator, elsewhere the product is rounded to a's dtype first."""
    if a.dtype != dtype and a.is_cuda and _MM_OUT_DTYPE:
        return torch.mm(a, b, out_dtype=dtype) if into is None else torch.addmm(into, a, b, out_dtype=dtype, out=into)
    if into is None:
        return (a @ b).to(dtype)
    return into.addmm_(a, b) if a.dtype == into.dtype else into.add_(a @ b)


def _chunks(hidden, weight, bias, labels, ignore_index, chunk, cdt, row_scale, grads):
    """Per-row losses and, for ``grads`` = (hidden, weight, bias) flags, the gradients of sum_i row_scale_i loss_i.
    GEMMs take ``cdt`` operands; softmax, loss and weight/bias gradients are accumulated in fp32 (fp64 for fp64)."""
    n, acc = hidden.shape[0], torch.float64 if cdt == torch.float64 else torch.float32
    loss = torch.zeros(n, dtype=acc, device=hidden.device)
    gh = torch.empty(hidden.shape, dtype=hidden.dtype, device=hidden.device) if grads[0] else None
    gw = torch.zeros(weight.shape, dtype=acc, device=weight.device) if grads[1] else None
    gb = torch.zeros(bias.shape, dtype=acc, device=bias.device) if grads[2] else None
    w = weight.to(cdt)
    with torch.no_grad(), torch.autocast(hidden.device.type, enabled=False):
        for s in range(0, n, chunk):
            h, y = hidden[s : s + chunk].to(cdt), labels[s : s + chunk]
            logits = _mm(h, w.T, acc)  # [C, V], the only buffer of size V per row
            if bias is not None:
                logits += bias.to(acc)
            valid = y != ignore_index
            y = torch.where(valid, y, 0)[:, None]
            lse = torch.logsumexp(logits, dim=1, keepdim=True)
            loss[s : s + chunk] = torch.where(valid, (lse - logits.gather(1, y))[:, 0], 0)
            if not any(grads):
                continue
            g = logits.sub_(lse).exp_()  # softmax in place; d loss_i / d logits_i = p_i - onehot(y_i)
            g.scatter_add_(1, y, torch.full_like(lse, -1.0))
            g *= torch.where(valid, row_scale[s : s + chunk] if row_scale.dim() else row_scale, 0).to(acc)[:, None]
            if gb is not None:
                gb += g.sum(0)
            g = g.to(cdt)
            if gh is not None:
                gh[s : s + chunk] = _mm(g, w, acc).to(hidden.dtype)
            if gw is not None:
                _mm(g.T, h, acc, into=gw)
    return loss, gh, gw, gb


class _LinearCrossEntropy(torch.autograd.Function):
    """mean/sum: the gradients are made in forward (only they are saved) and scaled by grad_output in backward.
    none: grad_output weights each row inside the sum over rows of grad_weight, so backward recomputes per chunk."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, ignore_index, reduction, chunk, cdt, grad_on):
        ctx.reduction, ctx.args = reduction, (ignore_index, chunk, cdt)
        # needs_input_grad is set under no_grad too: evaluation must not pay for gradients
        grads = tuple(grad_on and g for g in (*ctx.needs_input_grad[:2], bias is not None and ctx.needs_input_grad[2]))
        if reduction == "none":
            ctx.save_for_backward(hidden, weight, bias, labels)
            return _chunks(hidden, weight, bias, labels, ignore_index, chunk, cdt, None, (False,) * 3)[0]
        acc = torch.float64 if cdt == torch.float64 else torch.float32
        scale = torch.ones((), dtype=acc, device=hidden.device)
        if reduction == "mean":  # a tensor, not .item(): no host sync
            scale = scale / (labels != ignore_index).sum().clamp(min=1).to(acc)
        loss, gh, gw, gb = _chunks(hidden, weight, bias, labels, ignore_index, chunk, cdt, scale, grads)
        ctx.save_for_backward(gh, gw, gb)
        ctx.dtypes = weight.dtype, None if bias is None else bias.dtype
        return loss.sum() * scale

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        if ctx.reduction == "none":
            hidden, weight, bias, labels = ctx.saved_tensors
            grads = (*ctx.needs_input_grad[:2], bias is not None and ctx.needs_input_grad[2])
            _, gh, gw, gb = _chunks(hidden, weight, bias, labels, *ctx.args, grad_out, grads)
            dtypes = weight.dtype, None if bias is None else bias.dtype
        else:
            gh, gw, gb = (None if t is None else t * grad_out for t in ctx.saved_tensors)
            dtypes = ctx.dtypes
        gw = None if gw is None else gw.to(dtypes[0])
        gb = None if gb is None else gb.to(dtypes[1])
        return gh, gw, gb, None, None, None, None, None, None


@functools.cache
def _liger():
    """liger-kernel's functional fused linear cross-entropy, or None. 0.8.5 is the release whose API was read
    here; its reduction="none" recomputes the gradients per row in backward, which releases before Liger-Kernel
    PR #1298 got wrong (they scaled every gradient by grad_output[0]), so older ones are not used."""
    try:
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

        version = re.match(r"(\d+)\.(\d+)\.(\d+)", importlib.metadata.version("liger-kernel"))
    except Exception:  # an optional dependency: a broken install (Triton, CUDA) means "not available", not a crash
        return None
    ok = version is not None and tuple(int(p) for p in version.groups()) >= (0, 8, 5)
    return liger_fused_linear_cross_entropy if ok else None


def _liger_refusal(hidden, weight, bias) -> str | None:
    """Why the liger backend cannot take these inputs, or None if it can."""
    if hidden.device.type != "cuda":
        return f"it runs on CUDA tensors only, got {hidden.device}"
    if torch.float64 in (hidden.dtype, weight.dtype):
        return "its Triton kernel computes in fp32 and fp64 inputs would lose precision silently"
    same = len({t.dtype for t in (hidden, weight, bias) if t is not None}) == 1
    if not (same or torch.is_autocast_enabled("cuda")):
        return "hidden, weight and bias must share a dtype outside autocast"
    if _liger() is None:
        return "liger-kernel >= 0.8.5 is not importable"
    return None


def linear_cross_entropy(hidden, weight, labels, *, bias=None, ignore_index=-100, reduction="mean", chunk_size=None,
                         backend="auto"):  # fmt: skip
    """Cross-entropy of the logits ``hidden @ weight.T + bias`` against ``labels``, without storing the logits.

    loss_i = logsumexp_v(z_iv) - z_{i, labels_i} with z_i = W h_i + b, and loss_i = 0 where labels_i ==
    ignore_index; "mean" is sum_i loss_i / #{i: labels_i != ignore_index} (0, with zero gradients, if that count
    is 0), "sum" is sum_i loss_i, "none" the vector of loss_i.

    Args:
        hidden: [N, D] float (bf16, fp16, fp32, fp64; any strides); under autocast the GEMMs take autocast's dtype.
        weight: [V, D] float, the LM head. bias: optional [V] float.
        labels: [N] int64 in [0, V) or equal to ``ignore_index`` (an int).
        reduction: "mean" | "sum" | "none". Returns a 0-dim tensor, or [N] for "none"; fp32 (fp64 for fp64 inputs).
        chunk_size: rows per chunk, or None: the most rows whose fp32 (fp64) logits fit 256 MiB, i.e.
            max(1, 2**28 // (V * 4)) (2**28 // (V * 8) for fp64).
        backend: "torch" (chunked PyTorch, any device and dtype); "liger" (liger-kernel >= 0.8.5, CUDA, no fp64,
            one dtype or autocast; it chooses its own chunk size, so ``chunk_size`` must be None); "auto": "liger"
            where it can run and ``chunk_size`` is None, else "torch".

    The "torch" path computes each chunk's logits, softmax and loss in fp32 (fp64 for fp64 inputs). For "mean"/"sum"
    it makes the gradients in the forward pass and keeps only grad_hidden [N, D] (hidden's dtype) and an fp32
    grad_weight [V, D] (and grad_bias); for "none" it keeps the inputs and recomputes each chunk in backward, so a
    per-row grad_output is applied exactly.
    """
    require_float("hidden", hidden)
    require_float("weight", weight)
    require_shape("hidden", hidden, [None, None], "[N, D]")
    n, d = hidden.shape
    require_shape("weight", weight, [None, d], "[V, D]")
    v = weight.shape[0]
    if bias is not None:
        require_float("bias", bias)
        require_shape("bias", bias, [v], "[V]")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64:
        raise TypeError(f"labels must be an int64 (long) tensor, got {getattr(labels, 'dtype', type(labels))}")
    require_shape("labels", labels, [n], "[N]")
    require_same_device(hidden=hidden, weight=weight, bias=bias, labels=labels)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int, got {ignore_index!r}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(_REDUCTIONS)}, got {reduction!r}")
    require_chunk_size(chunk_size)
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {list(_BACKENDS)}, got {backend!r}")
    if value_checks_enabled() and n and not bool(((labels >= 0) & (labels < v) | (labels == ignore_index)).all()):
        bad = labels[(labels < 0) | (labels >= v)]
        bad = bad[bad != ignore_index]
        raise ValueError(f"labels must lie in [0, {v}) or equal ignore_index={ignore_index}, found {bad[0].item()}")

    refusal = _liger_refusal(hidden, weight, bias) if backend != "torch" else None
    if refusal is None and chunk_size is not None and backend != "torch":
        refusal = "it picks its own chunk size (chunk_size must be None)"
    if backend == "liger" and refusal is not None:
        raise ValueError(f"backend='liger' cannot run here: {refusal}")
    if backend == "liger" or (backend == "auto" and refusal is None):
        return _liger()(hidden, weight, labels, bias=bias, ignore_index=ignore_index, reduction=reduction,
                        accum_dtype=torch.float32)  # fmt: skip

    if torch.float64 in (hidden.dtype, weight.dtype):
        cdt = torch.float64
    elif torch.is_autocast_enabled(hidden.device.type):
        cdt = torch.get_autocast_dtype(hidden.device.type)
    else:
        cdt = torch.promote_types(hidden.dtype, weight.dtype)
    itemsize = 8 if cdt == torch.float64 else 4
    chunk = chunk_size or max(1, _CHUNK_BYTES // (v * itemsize))
    return _LinearCrossEntropy.apply(
        hidden, weight, bias, labels, ignore_index, reduction, chunk, cdt, torch.is_grad_enabled()
    )
