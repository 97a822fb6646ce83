"""FLOPs per token of the actual algorithm (statetrack.lm.flops), against values computed by hand."""

import pytest

from statetrack.lm.flops import delta_rule_flops, flops_per_token, mfu, peak_flops, selective_scan_flops
from statetrack.models import StateTrackConfig


def test_deltanet_by_hand():
    # D = 16, 2 layers, 2 heads of K = V = 8, SwiGLU hidden 32, vocab 100
    cfg = StateTrackConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2, mixer="deltanet",
                           mixer_settings={"deltanet": {"n_heads": 2}}, intermediate_size=32)  # fmt: skip
    f = flops_per_token(cfg, seq_len=256)
    # linear weights per layer: q, k, v, o 4 x 16 x 16 = 1024, beta 16 x 2 = 32, MLP 16 x 64 + 32 x 16 = 1536;
    # two layers 5184, the LM head 16 x 100 = 1600: 6784 weights, 2 FLOPs each
    assert f.matmul == 2 * 6784
    # per head: 2 C (3K + 2V) + 6 K V + 2 C^2 / 3 at C = 64: 5120 + 384 + 8192 / 3; 2 heads x 2 layers
    per_head = 5120 + 384 + 8192 / 3
    assert delta_rule_flops(8, 8) == pytest.approx(per_head, rel=1e-15)
    assert f.recurrence == pytest.approx(4 * per_head, rel=1e-15)
    assert f.attention == 0
    assert f.training == pytest.approx(139520.0, rel=1e-12)  # 3 x (13568 + 32938.67)


def test_deltaproduct_counts_each_householder_factor():
    def cfg(n_h):
        settings = {"deltaproduct": {"n_heads": 2, "num_householder": n_h}}
        return StateTrackConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, mixer="deltaproduct",
                                mixer_settings=settings, mlp_ratio=0)  # fmt: skip

    assert flops_per_token(cfg(2), 64).recurrence == 2 * flops_per_token(cfg(1), 64).recurrence


def test_mamba_by_hand():
    # D = 16, expand 2: E = 32, N = 16, dt_rank = 1, no MLP, vocab 100
    cfg = StateTrackConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, mixer="mamba", mlp_ratio=0)
    f = flops_per_token(cfg, seq_len=256)
    # in_proj 16 x 64 = 1024, x_proj 32 x 33 = 1056, dt_proj 1 x 32 = 32, out_proj 32 x 16 = 512; head 1600
    assert f.matmul == 2 * (1024 + 1056 + 32 + 512 + 1600)
    assert f.recurrence == selective_scan_flops(32, 16) == 9 * 32 * 16 + 2 * 32
    assert f.training == 3 * (8448 + 4672)


def test_attention_grows_with_the_sequence():
    cfg = StateTrackConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, mixer="transformer",
                           mixer_settings={"transformer": {"n_heads": 2}}, mlp_ratio=0)  # fmt: skip
    f = flops_per_token(cfg, seq_len=128)
    assert f.matmul == 2 * (16 * 48 + 16 * 16 + 1600)
    assert f.attention == 4 * 128 * 16
    assert f.training == 3 * (5248 + 8192)


def test_no_formula_is_an_error_not_a_guess():
    cfg = StateTrackConfig(vocab_size=10, hidden_size=16, num_hidden_layers=1, mixer="slstm")
    with pytest.raises(ValueError, match="no FLOPs formula for mixer 'slstm'"):
        flops_per_token(cfg, 64)
    with pytest.raises(ValueError, match="seq_len"):
        flops_per_token(StateTrackConfig(vocab_size=10, hidden_size=16, num_hidden_layers=1), 0)


def test_mfu():
    assert mfu(1000.0, 1e9, 1e12) == pytest.approx(1.0)
    assert mfu(1000.0, 1e9, 1e12, devices=4) == pytest.approx(0.25)
    assert mfu(1000.0, 1e9, None) is None
    assert peak_flops("cpu") is None
