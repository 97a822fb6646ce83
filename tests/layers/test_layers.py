"""Every mixer: forward == step-by-step decoding == forward continued from a state; gradients reach every
parameter; transition eigenvalues in [0, 1] (min_eigenvalue = 0) or [-1, 1] (-1); bad arguments fail clearly."""

from __future__ import annotations

import pytest
import torch

from statetrack.layers import get_mixer_class

from .conftest import CASES, D, assert_gradients_reach_every_parameter, make

B, T = 2, 9


@pytest.mark.parametrize("case", list(CASES))
def test_forward_equals_step_by_step(case):
    m = make(case)
    x = torch.randn(B, T, D, dtype=torch.float64)
    y, final = m(x, output_state=True)
    assert y.shape == (B, T, D) and y.dtype == torch.float64
    state = m.init_state(B, dtype=torch.float64)
    ys = []
    for t in range(T):
        yt, state = m.step(x[:, t], state)
        ys.append(yt)
    torch.testing.assert_close(torch.stack(ys, 1), y, rtol=1e-9, atol=1e-10)
    assert set(state) == set(final)
    for k in final:
        torch.testing.assert_close(state[k], final[k], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("case", list(CASES))
def test_forward_continues_from_a_state(case):
    m = make(case)
    x = torch.randn(B, T, D, dtype=torch.float64)
    y_full, s_full = m(x, output_state=True)
    y1, s1 = m(x[:, :4], output_state=True)
    y2, s2 = m(x[:, 4:], s1, output_state=True)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y_full, rtol=1e-9, atol=1e-10)
    for k in s_full:
        torch.testing.assert_close(s2[k], s_full[k], rtol=1e-9, atol=1e-10)
    # and the state survives a save/load round trip (state I/O)
    y_none, s_none = m(x[:, :4], None, output_state=False)
    assert s_none is None


@pytest.mark.parametrize("case", list(CASES))
def test_gradients_reach_every_parameter(case):
    assert_gradients_reach_every_parameter(make(case).float(), torch.randn(B, T, D, requires_grad=True))


EIG_CASES = ["deltanet", "deltanet_noconv_gate", "gated_deltanet", "deltaproduct", "mamba", "diagonal_rnn"]


def _eigenvalues(m, x):
    A = m.transitions(x).double()
    if isinstance(m, get_mixer_class("deltanet")):
        return torch.linalg.eigvals(A).flatten()  # matrices [..., K, K]
    return A.flatten().to(torch.complex128)  # diagonal transitions: the entries are the eigenvalues


@pytest.mark.parametrize("case", EIG_CASES)
@pytest.mark.parametrize("min_eigenvalue", [0.0, -1.0, -0.5])
def test_transition_eigenvalues_in_range(case, min_eigenvalue):
    m = make(case, min_eigenvalue)
    if case == "mamba":  # Mamba starts with small steps (a near 1): spread them so that a covers its range
        with torch.no_grad():
            m.dt_proj.bias.copy_(torch.linspace(-6.0, 3.0, m.dt_proj.bias.numel()))
    torch.manual_seed(1)
    # wide inputs drive the gates into saturation at both ends
    x = torch.randn(4, 33, D, dtype=torch.float64) * torch.logspace(-1, 1.5, 33, dtype=torch.float64)[:, None]
    ev = _eigenvalues(m, x)
    tol = 1e-9
    assert ev.abs().max() <= 1 + tol, "spectral radius above 1"
    if min_eigenvalue == 0.0:
        # [0, 1]: real and non-negative (also for products of two GH factors with beta <= 1)
        assert ev.imag.abs().max() <= 1e-6
        assert ev.real.min() >= -tol
    else:
        assert ev.real.min() >= min_eigenvalue - tol
        assert ev.real.min() < min_eigenvalue / 2, "negative eigenvalues never reached"


@pytest.mark.parametrize("bad", [0.5, -1.5, float("nan"), True])
def test_min_eigenvalue_out_of_range_fails(bad):
    for name in ("deltanet", "diagonal_rnn"):
        with pytest.raises((ValueError, TypeError), match="min_eigenvalue"):
            get_mixer_class(name)(16, min_eigenvalue=bad)


def test_heads_must_divide_width():
    for name in ("deltanet", "transformer", "slstm", "mlstm"):
        with pytest.raises(ValueError, match="must divide"):
            get_mixer_class(name)(18, n_heads=4)


def test_unknown_mixer():
    with pytest.raises(ValueError, match="unknown mixer 'deltanett'"):
        get_mixer_class("deltanett")


@pytest.mark.parametrize("case", list(CASES))
def test_bf16_autocast_forward_backward_and_step(case):
    m = make(case).float()
    x = torch.randn(B, T, D)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, _ = m(x)
        y1, _ = m.step(x[:, 0])
    y.float().sum().backward()
    assert torch.isfinite(y.float()).all() and torch.isfinite(y1.float()).all()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in m.parameters())


@pytest.mark.parametrize("W,with_cache", [(4, False), (4, True), (1, False), (3, True)])
def test_causal_conv_equals_conv1d(W, with_cache):
    """The shifted multiply-add convolution equals F.conv1d on the left-padded [B, C, T] input, values and
    gradients, and hands on the last W - 1 inputs as the cache."""
    from statetrack.layers.base import causal_conv

    g = torch.Generator().manual_seed(0)
    B, T, C = 2, 9, 5
    x = torch.randn(B, T, C, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(C, W, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(C, generator=g, dtype=torch.float64, requires_grad=True)
    cache = torch.randn(B, C, W - 1, generator=g, dtype=torch.float64) if with_cache else None
    y, new = causal_conv(x, w, b, cache)
    left = cache if with_cache else torch.zeros(B, C, W - 1, dtype=torch.float64)
    full = torch.cat([left, x.transpose(1, 2)], 2)
    ref = torch.nn.functional.silu(torch.nn.functional.conv1d(full, w[:, None], b, groups=C)).transpose(1, 2)
    assert torch.allclose(y, ref, atol=1e-12)
    assert torch.equal(new, full[:, :, full.shape[2] - (W - 1) :])
    gy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    assert all(
        torch.allclose(a, r, atol=1e-12)
        for a, r in zip(torch.autograd.grad(y, (x, w, b), gy), torch.autograd.grad(ref, (x, w, b), gy), strict=True)
    )


@pytest.mark.parametrize("T", [1, 2, 7, 33])
def test_prefix_products_equal_the_sequential_products(T):
    from statetrack.layers.full_matrix_rnn import prefix_products

    A = torch.randn(3, T, 4, 4, dtype=torch.float64) / 2 + torch.eye(4, dtype=torch.float64)
    H, want = torch.eye(4, dtype=torch.float64).expand(3, 4, 4), []
    for t in range(T):
        H = A[:, t] @ H
        want.append(H)
    torch.testing.assert_close(prefix_products(A), torch.stack(want, 1), rtol=1e-10, atol=1e-12)


def test_sliding_window_attention_sees_only_its_window():
    """Windowed attention equals full softmax attention over the last `window` positions, written out."""
    torch.manual_seed(3)
    m = make("transformer_window")
    x = torch.randn(2, 11, D, dtype=torch.float64)
    y, _ = m(x)
    from statetrack.layers.attention import rotary

    q, k, v = m.qkv(x).view(2, 11, 3, m.n_heads, m.head_dim).permute(2, 0, 3, 1, 4)
    q, k = rotary(q, 0, m.rope_base), rotary(k, 0, m.rope_base)
    s = q @ k.transpose(-1, -2) / m.head_dim**0.5
    i, j = torch.arange(11)[:, None], torch.arange(11)[None, :]
    s = s.masked_fill(~((j <= i) & (j > i - 3)), float("-inf"))
    ref = m.o_proj((s.softmax(-1) @ v).transpose(1, 2).reshape(2, 11, D))
    torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-12)
    _, state = m(x, output_state=True)
    assert state["k"].shape[2] == 3 and int(state["pos"][0]) == 11  # the cache keeps the window only


def test_attention_max_length_names_the_field():
    m = get_mixer_class("transformer")(16, n_heads=2, max_length=8).double()
    m(torch.randn(1, 8, 16, dtype=torch.float64))
    _, st = m(torch.randn(1, 6, 16, dtype=torch.float64), output_state=True)
    with pytest.raises(ValueError, match="attention max_length = 8: this sequence reaches 9 positions"):
        m(torch.randn(1, 3, 16, dtype=torch.float64), st)
    with pytest.raises(ValueError, match="window must be an int >= 1"):
        get_mixer_class("transformer")(16, n_heads=2, window=0)


@pytest.mark.parametrize("case", ["deltanet", "gated_deltanet", "deltaproduct", "deltanet_noconv_gate"])
def test_transition_eigenvalues_are_those_of_the_full_matrices(case):
    """The n_h x n_h shortcut gives the eigenvalues of A_t = g_t prod_j (I - beta k k^T) besides g_t: matched
    one by one into the full K x K spectrum, what is left is K - n_h copies of one value (g_t)."""
    m = make(case)
    torch.manual_seed(4)
    x = torch.randn(2, 5, D, dtype=torch.float64) * 3
    ev = m.transition_eigenvalues(x)  # [B, T, H, n_h]
    full = torch.linalg.eigvals(m.transitions(x))  # [B, T, H, K]
    assert ev.shape == (*full.shape[:-1], m.n_h)
    for idx in [(0, 0, 0), (1, 4, 1), (0, 2, 1)]:
        rest = list(full[idx])
        for z in ev[idx]:
            i = min(range(len(rest)), key=lambda j: abs(rest[j] - z))
            assert abs(rest.pop(i) - z) < 1e-8
        assert max(abs(r - rest[0]) for r in rest) < 1e-8
