"""The DeltaNet family's head sizes and fla-compatibility settings (head_dim, expand_v, conv_bias, qk_norm_eps), in
fp64: forward == step-by-step decoding == forward continued from a state == packed documents one by one; gradients
reach every parameter; parameter shapes follow K = head_dim, V = expand_v * K; defaults keep today's shapes; bad
values fail naming the field."""

from __future__ import annotations

import pytest
import torch

from statetrack.layers import get_mixer_class, mixer_settings
from statetrack.models import StateTrackConfig

from .conftest import assert_gradients_reach_every_parameter

D, B, T = 16, 2, 9

# name, settings: heads that do not divide the width, V != K, no conv bias, fla's qk norm epsilon
CASES = {
    "deltanet_wide": ("deltanet", dict(n_heads=3, head_dim=8, expand_v=2.0, conv_bias=False, qk_norm_eps=1e-6)),
    "deltanet_noconv_gate": (
        "deltanet",
        dict(n_heads=2, head_dim=4, expand_v=1.5, use_short_conv=False, use_output_gate=True),
    ),
    "gated_deltanet": ("gated_deltanet", dict(n_heads=3, head_dim=4, expand_v=2.0, conv_bias=False, qk_norm_eps=1e-6)),
    "deltaproduct_gated": (
        "deltaproduct",
        dict(n_heads=2, head_dim=6, expand_v=0.5, num_householder=3, use_gate=True, conv_bias=False),
    ),
}


def make(case: str, seed: int = 0):
    name, kw = CASES[case]
    torch.manual_seed(seed)
    return get_mixer_class(name)(D, **kw).double()


@pytest.mark.parametrize("case", list(CASES))
def test_shapes_follow_head_dim_and_expand_v(case):
    m = make(case)
    _, kw = CASES[case]
    H, K = kw["n_heads"], kw["head_dim"]
    V, n_h = round(kw["expand_v"] * K), kw.get("num_householder", 1)
    shapes = {n: tuple(p.shape) for n, p in m.named_parameters()}
    assert shapes["q_proj.weight"] == (H * K, D)
    assert shapes["k_proj.weight"] == (n_h * H * K, D)
    assert shapes["v_proj.weight"] == (n_h * H * V, D)
    assert shapes["b_proj.weight"] == (n_h * H, D)
    assert shapes["o_norm.weight"] == (V,)
    assert shapes["o_proj.weight"] == (D, H * V)
    if m.use_output_gate:
        assert shapes["g_proj.weight"] == (H * V, D)
    if m.use_short_conv:
        assert shapes["v_conv.weight"] == (n_h * H * V, 1, 4)
        has_bias = kw.get("conv_bias", True)
        assert ("q_conv.bias" in shapes) == has_bias and ("q_conv.bias" in m.state_dict()) == has_bias
    assert m.init_state(B)["S"].shape == (B, H, K, V)


@pytest.mark.parametrize("case", list(CASES))
def test_forward_equals_step_by_step_and_continues(case):
    m = make(case)
    x = torch.randn(B, T, D, dtype=torch.float64)
    y, final = m(x, output_state=True)
    assert y.shape == (B, T, D)
    state = m.init_state(B, dtype=torch.float64)
    ys = []
    for t in range(T):
        yt, state = m.step(x[:, t], state)
        ys.append(yt)
    torch.testing.assert_close(torch.stack(ys, 1), y, rtol=1e-9, atol=1e-10)
    for k in final:
        torch.testing.assert_close(state[k], final[k], rtol=1e-9, atol=1e-10)
    y1, s1 = m(x[:, :4], output_state=True)
    y2, _ = m(x[:, 4:], s1, output_state=True)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("case", list(CASES))
def test_packed_documents_equal_one_by_one(case):
    m = make(case)
    lens = [3, 1, 5]
    docs = [torch.randn(1, n, D, dtype=torch.float64) for n in lens]
    cu = torch.tensor([0, 3, 4, 9], dtype=torch.int32)
    y, st = m(torch.cat(docs, 1), output_state=True, cu_seqlens=cu)
    for i, d in enumerate(docs):
        yd, sd = m(d, output_state=True)
        torch.testing.assert_close(y[:, cu[i] : cu[i + 1]], yd, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(st["S"][i : i + 1], sd["S"], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("case", list(CASES))
def test_gradients_reach_every_parameter(case):
    assert_gradients_reach_every_parameter(make(case).float(), torch.randn(B, T, D, requires_grad=True))


@pytest.mark.parametrize("case", list(CASES))
def test_a_copy_built_on_meta_and_loaded_from_the_state_dict_is_the_same(case):
    """Nothing outside the state dict (Hugging Face's from_pretrained builds on the meta device, then loads)."""
    m = make(case)
    name, kw = CASES[case]
    with torch.device("meta"):
        copy = get_mixer_class(name)(D, **kw)
    copy.load_state_dict(m.state_dict(), assign=True)
    x = torch.randn(B, T, D, dtype=torch.float64)
    torch.testing.assert_close(copy(x)[0], m(x)[0], rtol=0, atol=0)


def test_transitions_have_key_size_and_eigenvalues_in_range():
    m = make("deltaproduct_gated")
    A = m.transitions(torch.randn(1, 5, D, dtype=torch.float64))
    assert A.shape == (1, 5, 2, 6, 6)
    eig = torch.linalg.eigvals(A).abs()
    assert float(eig.max()) <= 1 + 1e-9


def test_qk_norm_eps_is_fla_l2norm():
    m = make("deltanet_wide")
    x = torch.randn(4, 8, dtype=torch.float64) * 1e-3  # small enough that the epsilon shows
    torch.testing.assert_close(m._unit(x), x / torch.sqrt((x * x).sum(-1, keepdim=True) + 1e-6))
    m.qk_norm_eps = None
    torch.testing.assert_close(m._unit(x), x / x.norm(dim=-1, keepdim=True))


@pytest.mark.parametrize("name", ["deltanet", "gated_deltanet", "deltaproduct"])
def test_defaults_keep_todays_shapes(name):
    m = get_mixer_class(name)(D, n_heads=2)
    shapes = {n: tuple(p.shape) for n, p in m.named_parameters()}
    n_h = 2 if name == "deltaproduct" else 1
    assert shapes["q_proj.weight"] == (D, D) and shapes["v_proj.weight"] == (n_h * D, D)
    assert shapes["o_proj.weight"] == (D, D) and shapes["o_norm.weight"] == (D // 2,)
    assert shapes["q_conv.bias"] == (D,)
    assert m.settings.qk_norm_eps is None


def test_the_lm_config_carries_the_new_settings():
    cfg = StateTrackConfig(vocab_size=11, hidden_size=D, num_hidden_layers=1, mixer="gated_deltanet",
                           mixer_settings={"gated_deltanet": dict(n_heads=3, head_dim=4, expand_v=2.0)})  # fmt: skip
    assert cfg.mixer_settings["gated_deltanet"]["head_dim"] == 4
    assert cfg.mixer_settings["gated_deltanet"]["conv_bias"] is True


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(head_dim=0), "head_dim"),
        (dict(head_dim=2.5), "head_dim"),
        (dict(expand_v=0), "expand_v"),
        (dict(expand_v="2"), "expand_v"),
        (dict(head_dim=4, expand_v=0.3), "expand_v"),
        (dict(conv_bias=1), "conv_bias"),
        (dict(qk_norm_eps=-1e-6), "qk_norm_eps"),
        (dict(qk_norm_eps=float("nan")), "qk_norm_eps"),
        (dict(n_heads=3), "n_heads = 3 must divide d_model"),  # without head_dim the heads still divide the width
    ],
)
def test_bad_values_name_the_field(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        get_mixer_class("deltanet")(D, **kw)
    with pytest.raises((ValueError, TypeError), match=match):  # the same check where configs are read
        mixer_settings("gated_deltanet", kw).check(D)
