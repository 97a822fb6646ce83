"""Decoding through one CUDA graph per step gives what the eager step gives (GPU), and says why it cannot run
where it cannot (any device)."""

from __future__ import annotations

import pytest
import torch

from statetrack.models import StateTrackConfig, StateTrackForCausalLM

V = 37


def _model(mixer: str, decode_graphs: str, device: str, **settings):
    torch.manual_seed(0)
    cfg = StateTrackConfig(vocab_size=V, hidden_size=64, num_hidden_layers=2, mixer=mixer,
                           mixer_settings={mixer: settings}, decode_graphs=decode_graphs)  # fmt: skip
    return StateTrackForCausalLM(cfg).to(device).eval()


def test_on_raises_where_graphs_cannot_run():
    model = _model("deltanet", "on", "cpu", n_heads=2)
    ids = torch.randint(0, V, (2, 5))
    with torch.no_grad():
        cache = model(ids, use_cache=True).cache
        with pytest.raises(ValueError, match="decode_graphs='on' but the inputs are not on a CUDA device"):
            model(ids[:, :1], cache=cache, use_cache=True)


def test_bad_setting():
    with pytest.raises(ValueError, match="decode_graphs must be"):
        StateTrackConfig(vocab_size=V, hidden_size=64, decode_graphs="yes")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (benchmarks/gpu_tests.sh)")
@pytest.mark.parametrize("mixer, settings", [("deltanet", {"n_heads": 2}), ("gated_deltanet", {"n_heads": 2}),
                                             ("mamba", {"d_state": 8}), ("mlstm", {"n_heads": 2})])  # fmt: skip
def test_graphed_decoding_equals_eager(mixer, settings):
    graphed, eager = _model(mixer, "on", "cuda", **settings), _model(mixer, "off", "cuda", **settings)
    ids = torch.randint(0, V, (3, 9), device="cuda")
    kw = dict(max_new_tokens=12, do_sample=False, pad_token_id=0, eos_token_id=None,
              attention_mask=torch.ones_like(ids))  # fmt: skip
    with torch.no_grad():
        a, b = graphed.generate(ids, **kw), eager.generate(ids, **kw)
        assert torch.equal(a, b)
        # logits too, step by step, and a cache that is not the graph's own (copied in)
        ca, cb = graphed(ids, use_cache=True).cache, eager(ids, use_cache=True).cache
        for t in range(4):
            tok = a[:, 9 + t : 10 + t]
            oa, ob = graphed(tok, cache=ca, use_cache=True), eager(tok, cache=cb, use_cache=True)
            torch.testing.assert_close(oa.logits, ob.logits, rtol=1e-4, atol=1e-4)
            ca, cb = oa.cache, ob.cache
    assert len(graphed._decode_graphs.graphs) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (benchmarks/gpu_tests.sh)")
def test_graphs_are_recorded_again_after_an_in_place_weight_change():
    """A recorded step reads derived weights (the fused projections): an in-place update must not leave the graph
    on the old ones."""
    graphed, eager = _model("deltanet", "on", "cuda", n_heads=2), _model("deltanet", "off", "cuda", n_heads=2)
    ids = torch.randint(0, V, (2, 5), device="cuda")
    kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None)
    with torch.no_grad():
        graphed.generate(ids, **kw)
        first = graphed._decode_graphs.graphs
        for m in (graphed, eager):
            m.model.layers[0].mixer.k_proj.weight.mul_(-3.0)
        assert torch.equal(graphed.generate(ids, **kw), eager.generate(ids, **kw))
    assert graphed._decode_graphs.graphs is not first
