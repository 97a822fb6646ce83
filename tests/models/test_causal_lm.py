"""The Hugging Face causal LMs, for every mixer, in fp64 on the CPU: cached decoding equals the full forward at
every position, packed documents equal the documents run one by one (logits and gradients), save/load is exact,
the Auto classes and generate() work, bad configs fail naming the field."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

import statetrack  # noqa: F401 - registers the Auto classes
from statetrack.layers import MIXERS
from statetrack.models import StateTrackConfig, StateTrackForCausalLM, StateTrackModel

V, D = 13, 16
SMALL = {  # per mixer: settings that keep an fp64 model tiny
    "deltanet": {"n_heads": 2},
    "gated_deltanet": {"n_heads": 2},
    "deltaproduct": {"n_heads": 2},
    "mamba": {"d_state": 4},
    "diagonal_rnn": {"d_state": 8},
    "full_matrix_rnn": {"n": 4},
    "transformer": {"n_heads": 2},
    "lstm": {},
    "slstm": {"n_heads": 2},
    "mlstm": {"n_heads": 2},
}
assert set(SMALL) == set(MIXERS)
CASES = [*MIXERS, "hybrid"]


def make(case: str, seed: int = 0, **kw) -> StateTrackForCausalLM:
    if case == "hybrid":  # DeltaNet with attention every other layer
        kw = dict(num_hidden_layers=4, layer_mixers=["deltanet", "transformer"] * 2, **kw)
        settings = {"deltanet": SMALL["deltanet"], "transformer": {**SMALL["transformer"], "window": 7}}
    else:
        kw = dict(num_hidden_layers=2, mixer=case, **kw)
        settings = {case: SMALL[case]}
    torch.manual_seed(seed)
    cfg = StateTrackConfig(vocab_size=V, hidden_size=D, mixer_settings=settings, mlp_ratio=2.0, **kw)
    return StateTrackForCausalLM(cfg).double().eval()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("prompt", [1, 63, 65, 300])
def test_cached_decoding_equals_the_full_forward(case, prompt):
    model = make(case)
    torch.manual_seed(1)
    ids = torch.randint(0, V, (2, prompt + 4))
    with torch.no_grad():
        full = model(ids).logits
        out = model(ids[:, :prompt], use_cache=True)
        got = [out.logits]
        cache = out.cache
        for t in range(prompt, prompt + 4):
            out = model(ids[:, t : t + 1], cache=cache, use_cache=True)
            got.append(out.logits)
            cache = out.cache
    assert cache.get_seq_length() == prompt + 4
    torch.testing.assert_close(torch.cat(got, 1), full, rtol=1e-9, atol=1e-10)


def _one_by_one(model, docs):
    return [model(d[None]).logits[0] for d in docs]


@pytest.mark.parametrize("case", CASES)
def test_packed_documents_equal_one_by_one(case):
    model = make(case)
    torch.manual_seed(2)
    lens = [5, 1, 9, 3]
    docs = [torch.randint(0, V, (n,)) for n in lens]
    row = torch.cat(docs)[None]
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
    ref = torch.cat(_one_by_one(model, docs))
    by_cu = model(row, cu_seqlens=cu).logits[0]
    pos = torch.cat([torch.arange(n) for n in lens])[None]
    by_pos = model(row, position_ids=pos).logits[0]
    torch.testing.assert_close(by_cu, ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(by_pos, ref, rtol=1e-9, atol=1e-10)
    # the gradients too: the packed loss is the sum of the documents' losses (no target across a boundary)
    model.train()
    labels = row.clone()
    loss = model(row, cu_seqlens=cu, labels=labels).loss * sum(n - 1 for n in lens)
    g_packed = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    ref_loss = sum(
        F.cross_entropy(lg[:-1], d[1:], reduction="sum") for lg, d in zip(_one_by_one(model, docs), docs, strict=True)
    )
    g_ref = torch.autograd.grad(ref_loss, list(model.parameters()), allow_unused=True)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-9, atol=1e-10)
    for a, b in zip(g_packed, g_ref, strict=True):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("case", ["deltanet", "mamba", "transformer", "hybrid"])
def test_left_padded_batch_equals_its_rows(case):
    model = make(case)
    torch.manual_seed(3)
    a, b = torch.randint(0, V, (9,)), torch.randint(0, V, (4,))
    ids = torch.stack([a, torch.cat([torch.zeros(5, dtype=torch.long), b])])
    mask = torch.tensor([[1] * 9, [0] * 5 + [1] * 4])
    out = model(ids, attention_mask=mask, use_cache=False).logits
    torch.testing.assert_close(out[0], model(a[None]).logits[0], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(out[1, 5:], model(b[None]).logits[0], rtol=1e-9, atol=1e-10)
    # batched generation of a left-padded batch = each prompt on its own, to the logits of every new token
    # (attention layers: caches of different lengths, right-aligned; the hybrid's window of 7 is passed)
    kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None, output_logits=True,
              return_dict_in_generate=True)  # fmt: skip
    gen = model.generate(ids, attention_mask=mask, **kw)
    for row, (p, n) in enumerate([(a, 9), (b, 4)]):
        alone = model.generate(p[None], attention_mask=torch.ones(1, n), **kw)
        assert torch.equal(gen.sequences[row, 9:], alone.sequences[0, n:])
        for got, want in zip(gen.logits, alone.logits, strict=True):
            torch.testing.assert_close(got[row], want[0], rtol=1e-9, atol=1e-10)


def test_loss_is_the_shifted_cross_entropy():
    model = make("deltanet")
    ids = torch.randint(0, V, (2, 11))
    labels = ids.clone()
    labels[0, 4] = -100
    out = model(ids, labels=labels)
    ref = F.cross_entropy(out.logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, ref, rtol=1e-12, atol=1e-12)
    model.train()
    out = model(ids, labels=labels)
    assert out.logits is None  # the fused loss never formed them
    torch.testing.assert_close(out.loss, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tie", [False, True])
def test_save_and_load_through_the_auto_classes_is_exact(tmp_path, tie):
    model = make("hybrid", tie_word_embeddings=tie)
    assert (model.lm_head.weight is model.model.embeddings.weight) == tie
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert isinstance(AutoConfig.from_pretrained(tmp_path), StateTrackConfig)
    again = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float64)
    assert isinstance(again, StateTrackForCausalLM)
    sa, sb = model.state_dict(), again.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    ids = torch.randint(0, V, (2, 9))
    assert torch.equal(model(ids).logits, again(ids).logits)
    assert isinstance(AutoModel.from_pretrained(tmp_path, dtype=torch.float64), StateTrackModel)
    fresh = AutoModelForCausalLM.from_config(model.config)
    assert isinstance(fresh, StateTrackForCausalLM)


def test_initialisation_is_fla_like_and_keeps_the_layers_own():
    model = make("mamba", initializer_range=0.02)
    w = model.model.embeddings.weight.detach()
    assert abs(float(w.std()) - 0.02) < 0.003
    mamba = model.model.layers[0].mixer
    dt = F.softplus(mamba.dt_proj.bias.detach())
    assert float(dt.min()) >= 1e-3 * 0.99 and float(dt.max()) <= 1e-1 * 1.01  # its step-size init survived
    down = model.model.layers[0].mlp.down.weight.detach()
    assert abs(float(down.std()) - 0.02 / 2) < 0.003  # 1 / sqrt(2 * 2 layers)


@pytest.mark.parametrize("case", ["deltanet", "hybrid"])
def test_generate_greedy_equals_a_manual_argmax_loop(case):
    model = make(case)
    torch.manual_seed(4)
    ids = torch.randint(0, V, (2, 6))
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False,
                         pad_token_id=0, eos_token_id=None)  # fmt: skip
    seq = ids
    for _ in range(5):
        nxt = model(seq).logits[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], 1)
    assert torch.equal(out, seq)


def test_generate_sampling_and_beam_search():
    model = make("deltanet")
    ids = torch.randint(0, V, (1, 4))
    kw = dict(attention_mask=torch.ones_like(ids), max_new_tokens=4, pad_token_id=0, eos_token_id=None)
    torch.manual_seed(5)
    a = model.generate(ids, do_sample=True, temperature=0.8, **kw)
    torch.manual_seed(5)
    b = model.generate(ids, do_sample=True, temperature=0.8, **kw)
    assert torch.equal(a, b) and a.shape == (1, 8)
    beams = model.generate(ids, num_beams=3, do_sample=False, **kw)
    assert beams.shape == (1, 8) and torch.equal(beams[:, :4], ids)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(mixer="deltanett"), "mixer: unknown mixer 'deltanett'"),
        (dict(num_hidden_layers=3, layer_mixers=["deltanet", "mamba"]), "layer_mixers has 2 entries"),
        (dict(num_hidden_layers=2, layer_mixers=["deltanet", "mamb"]), r"layer_mixers\[1\]: unknown mixer 'mamb'"),
        (dict(mixer="deltanet", mixer_settings={"deltanet": {"n_heads": 3}}), r"mixer_settings\['deltanet'\]"),
        (dict(mixer="deltanet", mixer_settings={"mamba": {}}), "no layer uses"),
        (dict(mixer="mamba", mixer_settings={"mamba": {"n_heads": 2}}), "mixer 'mamba' has no setting 'n_heads'"),
        (dict(mixer="deltanet", min_eigenvalue=0.0, mixer_settings={"deltanet": {"min_eigenvalue": -1.0}}),
         "give one"),
        (dict(vocab_size=0), "vocab_size must be an int >= 1"),
    ],
)  # fmt: skip
def test_bad_configs_name_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        StateTrackConfig(**{"vocab_size": V, "hidden_size": D, **kw})


def test_min_eigenvalue_shorthand_reaches_every_eigenvalue_mixer():
    cfg = StateTrackConfig(vocab_size=V, hidden_size=D, num_hidden_layers=2, min_eigenvalue=0.0,
                           layer_mixers=["deltanet", "mamba"], mixer_settings={"deltanet": {"n_heads": 2}})  # fmt: skip
    assert cfg.mixer_settings["deltanet"]["min_eigenvalue"] == 0.0 == cfg.mixer_settings["mamba"]["min_eigenvalue"]
    model = StateTrackForCausalLM(cfg)
    assert [b.mixer.min_eigenvalue for b in model.model.layers] == [0.0, 0.0]
    assert StateTrackConfig.from_dict(cfg.to_dict()).min_eigenvalue == 0.0
