"""The token classifier: decoding token by token equals the full forward; configs are checked."""

from __future__ import annotations

import pytest
import torch

from statetrack.models import ModelConfig, TokenClassifier


@pytest.mark.parametrize("mixer", ["deltanet", "gated_deltanet", "diagonal_rnn", "transformer", "mlstm", "mamba"])
def test_step_decoding_equals_forward(mixer):
    torch.manual_seed(0)
    flat = dict(mixer=mixer, vocab_size=7, d_model=16, n_heads=2, n_layers=2, d_state=4, mlp_ratio=2)
    cfg = ModelConfig.from_dict(flat)  # the old flat form: each mixer takes what applies to it
    model = TokenClassifier(cfg).double()
    tokens = torch.randint(0, 7, (2, 7))
    logits, final = model(tokens, output_state=True)
    assert logits.shape == (2, 7, 7)
    state = [{k: v.double() for k, v in s.items()} for s in model.init_state(2)]
    outs = []
    for t in range(7):
        lt, state = model.step(tokens[:, t], state)
        outs.append(lt)
    torch.testing.assert_close(torch.stack(outs, 1), logits, rtol=1e-8, atol=1e-9)
    assert len(final) == len(state) == 2


def test_min_eigenvalue_reaches_every_layer():
    settings = dict(n_heads=2, min_eigenvalue=-0.25)
    cfg = ModelConfig(mixer="deltanet", vocab_size=5, d_model=16, n_layers=3, settings=settings)
    model = TokenClassifier(cfg)
    assert [b.mixer.min_eigenvalue for b in model.blocks] == [-0.25] * 3


def test_no_mlp_and_tied_embeddings():
    cfg = ModelConfig(mixer="lstm", vocab_size=5, d_model=8, n_layers=1, mlp_ratio=0, tie_embeddings=True)
    model = TokenClassifier(cfg)
    assert model.blocks[0].mlp is None and model.head.weight is model.embed.weight


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(mixer="rnn"), "unknown mixer 'rnn'"),
        (dict(mixer="deltanet", d_model=30, n_heads=4), "n_heads = 4 must divide d_model = 30"),
        (dict(mixer="mamba", min_eigenvalue=-1.5), "min_eigenvalue must lie in \\[-1, 0\\]"),
        (dict(mixer="deltanet", min_eigenvalue=0.1), "min_eigenvalue must lie in \\[-1, 0\\]"),
        (dict(mixer="deltanet", vocab_size=0), "vocab_size"),
    ],
)
def test_bad_configs(kw, match):
    with pytest.raises(ValueError, match=match):
        TokenClassifier(ModelConfig.from_dict({"vocab_size": 5, **kw}))
