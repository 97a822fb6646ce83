"""Chunked signed diagonal scan in plain PyTorch, with a hand-written backward: the CPU (and fallback) path.

Forward, h_t = a_t * h_{t-1} + b_t, with a_t of any sign (zeros and +-1 included). T is split into NC
chunks of C steps (plus a tail of T mod C steps run as a plain loop). Three passes, each step of which is
one elementwise op over all NC chunks at once:

  1. per chunk, from a zero state: its end value x_c and its product p_c = prod_j a_j;
  2. across chunks: the entering states s_0 = h_{-1}, s_{c+1} = p_c s_c + x_c, which is this same
     recurrence on NC steps and is solved by this same function (recursively);
  3. per chunk again: the recurrence from the true entering state, written straight into h.

Decays are only ever multiplied: never divided (a cumprod-ratio form gives 0/0 at a = 0 and underflows
for small |a|) and never put through a log (which loses the sign). So negative, zero and unit decays are
exact, and outputs carry the rounding of the plain loop plus one product per chunk. The Python loop runs
about 3C + NC + T mod C steps instead of T, each over B * NC * D elements. With C >= T / 2 it is the plain
loop (one op per step, and the fewest passes over memory): see :func:`default_chunk_size` for the choice.

Backward: the adjoint is the same recurrence run backwards. With g_t = dL/dh_t and gT = dL/dh_T (final),
  dh_t = g_t + a_{t+1} dh_{t+1}   (a_T dh_T := gT),   da_t = dh_t h_{t-1},   db_t = dh_t,   dh_{-1} = a_0 dh_0,
solved by the same three passes with the chunks walked in reverse (the chunk products p_c are the forward's),
then da in one streaming multiply. db is dh itself, not a copy.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .._cpu_buffers import empty_buffer


def _empty_like(x: torch.Tensor) -> torch.Tensor:
    """Uninitialised contiguous tensor like ``x`` (see :func:`empty_buffer`)."""
    return empty_buffer(x.shape, x.dtype, x.device)


_GRAIN = 32768  # PyTorch's intra-op grain size: smaller elementwise ops run on one thread


def default_chunk_size(T: int, lanes: int, device: torch.device) -> int:
    """Chunk length when the caller gives none (it changes rounding only, never the math).

    On a CPU the scan is memory-bound, and the plain loop (C >= T) moves the least data (3 tensor passes
    forward instead of 5), so chunks only pay where the plain loop's per-step op is too small to amortise its
    few-microsecond overhead: B * D lanes below ~2K. Then NC = 32768 // lanes chunks keep every op just below
    PyTorch's intra-op grain, so it runs on one thread: a thread barrier at every step of a Python loop is
    what makes such loops collapse when the cores are shared. On other devices (launch-bound) C = 64.
    """
    if device.type != "cpu":
        return 64
    nc = _GRAIN // max(lanes, 1)
    if nc < 16:
        return max(T, 1)
    return max(8, -(-T // nc))


def _num_chunks(T: int, c: int) -> int:
    # With fewer than two chunks the three passes cost more than the plain loop they replace.
    return T // c if T >= 2 * c else 0


def _chunks(x: torch.Tensor, nc: int, c: int) -> torch.Tensor:
    """[B, T, D] -> [B, NC, C, D], a view of the first NC * C steps."""
    return x[:, : nc * c].unflatten(1, (nc, c))


def scan_forward(a: torch.Tensor, b: torch.Tensor, init: torch.Tensor, c: int):
    """h_t = a_t h_{t-1} + b_t, h_{-1} = init. a, b [B, T, D]; init [B, D]; chunk length c.

    Returns (h [B, T, D], final state [B, D], chunk products [B, NC, D] or None).

    The loops take their per-step slices from one ``unbind`` per tensor: indexing ``x[:, t]`` in the loop cost
    more Python time per step than the step's arithmetic."""
    T = a.shape[1]
    nc = _num_chunks(T, c)
    h = _empty_like(b)
    s, p = init, None
    if nc:
        a_j, b_j, h_j = (_chunks(x, nc, c).unbind(2) for x in (a, b, h))
        # pass 1: the running [B, NC, D] buffers are small and stay in cache while a and b stream past
        x, p = b_j[0].clone(), a_j[0].clone()
        tmp = torch.empty_like(x)
        for aj, bj in zip(a_j[1:], b_j[1:], strict=True):
            torch.addcmul(bj, aj, x, out=tmp)
            x, tmp = tmp, x
            p.mul_(aj)
        # pass 2: inner[:, k] is the state leaving chunk k
        inner, _, _ = scan_forward(p, x, init, c)
        prev = torch.cat([init[:, None], inner[:, :-1]], dim=1)
        # pass 3
        for aj, bj, hj in zip(a_j, b_j, h_j, strict=True):
            torch.addcmul(bj, aj, prev, out=hj)
            prev = hj
        s = h_j[-1][:, -1]
    if T > nc * c:  # the tail, or everything when T < 2C
        for at, bt, ht in zip(*(x[:, nc * c :].unbind(1) for x in (a, b, h)), strict=True):
            torch.addcmul(bt, at, s, out=ht)
            s = ht
    # The final state is the last output itself (not the pass-2 value): a decoding step from it is the very op
    # the loop would have run next.
    return h, s.clone(), p


def scan_adjoint(a, g, g_final, h, init, p, c: int, need_da: bool):
    """Reverse pass of :func:`scan_forward`. a, g, h [B, T, D]; g_final, init [B, D]; p its chunk products.

    Returns (dh [B, T, D] (which is also db), da [B, T, D] or None, d_init [B, D])."""
    T = a.shape[1]
    nc = _num_chunks(T, c)
    t0 = nc * c
    dh = _empty_like(g)
    r = g_final  # the carry a_{t+1} dh_{t+1} that step t receives from its successor
    if T > t0:  # the tail, walked backwards
        a_t, g_t, dh_t = (x[:, t0:].unbind(1) for x in (a, g, dh))
        torch.add(g_t[-1], r, out=dh_t[-1])
        for t in range(len(g_t) - 2, -1, -1):
            torch.addcmul(g_t[t], a_t[t + 1], dh_t[t + 1], out=dh_t[t])
        r = a_t[0] * dh_t[0]
    if nc:
        a_j, g_j, dh_j = (_chunks(x, nc, c).unbind(2) for x in (a, g, dh))
        # pass 1: per chunk, dh from a zero carry; a_0 dh_0 is then the carry it sends to its predecessor
        y = g_j[-1].clone()
        tmp = torch.empty_like(y)
        for j in range(c - 2, -1, -1):
            torch.addcmul(g_j[j], a_j[j + 1], y, out=tmp)
            y, tmp = tmp, y
        x = y.mul_(a_j[0])
        # pass 2: carries entering the chunks, e_{NC-1} = r, e_{k-1} = p_k e_k + x_k: the forward recurrence
        # over the chunks in reverse order (NC entries, so the flips are cheap)
        inner, _, _ = scan_forward(p.flip(1), x.flip(1), r, c)
        e = torch.cat([inner[:, :-1].flip(1), r[:, None]], dim=1)
        # pass 3
        torch.add(g_j[-1], e, out=dh_j[-1])
        for j in range(c - 2, -1, -1):
            torch.addcmul(g_j[j], a_j[j + 1], dh_j[j + 1], out=dh_j[j])
    if T:
        r = a[:, 0] * dh[:, 0]
    da = None
    if need_da:  # one streaming op over contiguous rows beats a strided multiply per step
        da = _empty_like(g)
        torch.mul(dh[:, 1:], h[:, :-1], out=da[:, 1:])
        torch.mul(dh[:, :1], init[:, None], out=da[:, :1])
    return dh, da, r


class DiagScanFn(torch.autograd.Function):
    """(a, b, init or None, chunk length) -> (h, final state), all [B, T, D] / [B, D] in one float dtype."""

    @staticmethod
    def forward(ctx, a, b, init, c):
        init_ = init if init is not None else a.new_zeros(a.shape[0], a.shape[2])
        h, final, p = scan_forward(a, b, init_, c)
        ctx.save_for_backward(a, h, init_, p)
        ctx.c = c
        return h, final

    @staticmethod
    @once_differentiable
    def backward(ctx, g, g_final):
        a, h, init, p = ctx.saved_tensors
        need_a, need_b, need_init, _ = ctx.needs_input_grad
        dh, da, d_init = scan_adjoint(a, g, g_final, h, init, p, ctx.c, need_a)
        return da, (dh if need_b else None), (d_init if need_init else None), None


def diag_scan_chunk(a, b, initial_state, chunk_size: int = 64):
    """a, b [B, T, D] and initial_state [B, D] or None, all in the compute dtype. Returns (h, final)."""
    return DiagScanFn.apply(a, b, initial_state, chunk_size)
