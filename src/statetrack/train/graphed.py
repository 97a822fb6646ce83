"""One training step (forward, masked loss, backward, clipping, AdamW) eagerly or as a single CUDA graph.

Small state-tracking models are launch-bound on a GPU: a step is hundreds of short kernels whose launches cost
more than their work. Replaying the whole step as one CUDA graph removes that host cost. What a graph needs:
* fixed shapes: batches are padded to the longest training length (``pad_batch``). All models are causal and
  the loss is masked, so the extra columns change nothing the model learns;
* static tensors: the batch is copied into buffers the graph reads; loss, logits and the gradient norm are
  buffers it writes (copy them before the next replay);
* a capturable optimiser (AdamW with ``capturable=True`` and a tensor lr that the scheduler fills in place);
* no host syncs inside: the ops' value-range checks are off during capture.
Capturing needs warm-up steps (kernel compilation, cuBLAS workspaces). Those would be extra optimiser updates,
so the model, optimiser and RNG states are restored after them: the run is the same as an eager one, step for
step. If capture fails (a mixer that syncs with the host), the step stays eager and a warning says why.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable

import torch

from statetrack.ops import value_checks

StepFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]


def fixed_width(task, train_lengths) -> int:
    """Positions of the longest training sequence: the one batch width of a graphed run.
    ``train_lengths``: the ``lengths`` argument of ``task.sample`` (L, (lo, hi), or None = the task's own)."""
    hi = train_lengths if isinstance(train_lengths, int) else (train_lengths or task.train_lengths)[-1]
    return int(task.positions(int(hi)))


def pad_batch(x: torch.Tensor, y: torch.Tensor, m: torch.Tensor, length: int, pad_id: int):
    """Right-pad input/target [B, T] with ``pad_id`` and mask [B, T] with False to T = ``length``."""
    extra = length - x.shape[1]
    if extra < 0:
        raise ValueError(f"a batch of length {x.shape[1]} is longer than the graph's fixed length {length}")
    if extra == 0:
        return x, y, m
    pad = (0, extra)
    return (torch.nn.functional.pad(x, pad, value=pad_id), torch.nn.functional.pad(y, pad, value=pad_id),
            torch.nn.functional.pad(m, pad, value=False))  # fmt: skip


def make_step(model, forward, opt, loss_fn, grad_clip: float, autocast_factory) -> StepFn:
    """The eager step: (x, y, m) -> (loss, logits, grad norm or None); ``forward`` may be a compiled model."""

    def step(x, y, m):
        with autocast_factory():
            logits = forward(x)
        logits = logits.float()
        loss = loss_fn(logits, y, m)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip) if grad_clip > 0 else None
        opt.step()
        return loss, logits, gnorm

    return step


class GraphedStep:
    """The step of :func:`make_step` captured once and replayed; call it like the eager step.

    Args:
        step: the eager step (built with an AdamW whose ``capturable=True`` and lr is a CUDA tensor).
        model, opt: restored after the warm-up steps that precede capture.
        example: an (x, y, m) batch of the fixed shape, on the GPU.
        warmup: eager steps before capture (on a side stream, as CUDA graphs require).
        stream: the stream of the warm-up and the capture (default: a new one), rather than the one capture
            stream torch.cuda.graph shares between all graphs: PyTorch keys the cuBLAS workspace a graph bakes
            in by its capture stream, and destroying one graph frees that workspace under every other graph
            captured on the same stream (pytorch/pytorch#193402).
    """

    def __init__(self, step: StepFn, model, opt, example, warmup: int = 3, stream: torch.cuda.Stream | None = None):
        self.static_in = [t.clone() for t in example]
        saved = snapshot(model, opt)
        self.stream = side = stream if stream is not None else torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                step(*self.static_in)
        torch.cuda.current_stream().wait_stream(side)
        restore(model, opt, saved)
        self.graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)  # gradients are then allocated inside the graph's memory pool
        with torch.cuda.graph(self.graph, stream=side), value_checks(False):
            self.static_out = step(*self.static_in)

    def __call__(self, x, y, m):
        for dst, src in zip(self.static_in, (x, y, m), strict=True):
            dst.copy_(src, non_blocking=True)
        self.graph.replay()
        return self.static_out


def snapshot(model, opt) -> tuple:
    """Copies of the model's and optimiser's tensors, the lrs and the CUDA RNG state."""
    state = {p: {k: v.clone() if torch.is_tensor(v) else v for k, v in st.items()} for p, st in opt.state.items()}
    lrs = [float(g["lr"]) for g in opt.param_groups]
    return copy.deepcopy(model.state_dict()), state, lrs, torch.cuda.get_rng_state()


def restore(model, opt, saved: tuple) -> None:
    """Back to a :func:`snapshot`, in place: the graph, and the scheduler, hold these very tensors.

    An optimiser state that did not exist at the snapshot (a fresh run: AdamW creates it at its first step) is
    zeroed, which is what that creation would do. Creating it during capture instead would put its zero fill
    into the graph, and every replay would start Adam's moments and step count afresh.
    """
    model.load_state_dict(saved[0])
    for p, st in opt.state.items():
        old = saved[1].get(p)
        for k, v in st.items():
            if torch.is_tensor(v):
                v.copy_(old[k]) if old is not None else v.zero_()
    for g, lr in zip(opt.param_groups, saved[2], strict=True):
        if torch.is_tensor(g["lr"]):
            g["lr"].fill_(lr)
        else:
            g["lr"] = lr
    torch.cuda.set_rng_state(saved[3])


def build_step(model, forward, opt, loss_fn, grad_clip: float, autocast_factory, example=None,
               stream: torch.cuda.Stream | None = None, eager_fallback: bool = True) -> StepFn:  # fmt: skip
    """A graphed step when ``example`` (a fixed-shape batch on the GPU) is given and capture works, else eager.
    ``stream``: the capture stream (see :class:`GraphedStep`). ``eager_fallback=False`` (``train.deterministic``):
    a failed capture raises its error instead, after restoring the model and optimiser (an eager step, on the
    default stream and its cuBLAS workspace, is not promised the graph's bits)."""
    step = make_step(model, forward, opt, loss_fn, grad_clip, autocast_factory)
    if example is None:
        return step
    saved = snapshot(model, opt)
    try:
        return GraphedStep(step, model, opt, example, stream=stream)
    except Exception as e:  # noqa: BLE001 - any capture failure: fall back, say why
        if eager_fallback:
            warnings.warn(f"CUDA graph capture failed ({type(e).__name__}: {e}); training eagerly", stacklevel=2)
        torch.cuda.synchronize()
        restore(model, opt, saved)
        if not eager_fallback:
            raise  # the error itself (a CUDA out-of-memory error stays one: the sweep requeues those)
        return step


def autocast_factory(device_type: str, amp: bool, graphed: bool):
    """A no-argument callable giving the step's autocast context: bf16 when ``amp``; inside a CUDA graph with
    the weight-cast cache off (cached casts would be captured once and go stale)."""
    if not amp:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type, dtype=torch.bfloat16, cache_enabled=not graphed)
