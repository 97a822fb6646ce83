"""fla 0.6.0 checkpoints -> statetrack: small fla models of each type built with fla's own classes on the CPU,
saved, converted, loaded back with AutoModelForCausalLM; every fla tensor lands exactly once where it should,
the config maps (min_eigenvalue -1 / 0 from allow_neg_eigval), and the logits equal fla's own forward to 1e-4 in
fp32. fla's forward runs its Triton kernels in Triton's interpreter on CPU tensors, in a subprocess (the
interpreter must be on before triton is imported), with three stand-ins that change no arithmetic: the autotuner
takes its first config without timing (no GPU to time on), a loaded scalar is read as a Python int where the
interpreter loops over it (triton 3.6's interpreter with numpy 2), and flash-attn's kernel, which fla's
attention layer calls, is torch's SDPA. Errors name the field or tensor; the CLI fails in one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F

fla_models = pytest.importorskip("fla.models")
import fla.layers.attn as fla_attn  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

import statetrack  # noqa: E402, F401 - registers the Auto classes
from statetrack.cli import main  # noqa: E402
from statetrack.lm.convert_fla import config_from_fla, convert_fla, convert_fla_state_dict  # noqa: E402
from statetrack.models import StateTrackForCausalLM  # noqa: E402

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
V, D = 50, 32
FLA = {  # model_type -> (config class, model class)
    "delta_net": (fla_models.DeltaNetConfig, fla_models.DeltaNetForCausalLM),
    "gated_deltanet": (fla_models.GatedDeltaNetConfig, fla_models.GatedDeltaNetForCausalLM),
    "gated_deltaproduct": (fla_models.GatedDeltaProductConfig, fla_models.GatedDeltaProductForCausalLM),
}
CASES = {  # name -> (model_type, config fields beyond the common small ones)
    "delta_net": ("delta_net", dict(num_heads=2, allow_neg_eigval=True)),
    "delta_net_hybrid": ("delta_net", dict(num_heads=2, expand_k=0.5, expand_v=2.0, use_gate=True,
                                           attn=dict(layers=[1], num_heads=4, rope_theta=500.0, window_size=3))),
    "delta_net_noconv": ("delta_net", dict(num_heads=4, use_short_conv=False, allow_neg_eigval=True)),
    "gated_deltanet": ("gated_deltanet", dict(num_heads=2, head_dim=8, allow_neg_eigval=True)),
    "gated_deltanet_gva": ("gated_deltanet", dict(num_heads=2, head_dim=8, expand_v=1.0, num_v_heads=4,
                                                  use_gate=False)),
    "gated_deltaproduct": ("gated_deltaproduct", dict(num_heads=2, head_dim=8, num_householder=2,
                                                      use_forget_gate=True, allow_neg_eigval=True,
                                                      tie_word_embeddings=True)),
    "gated_deltaproduct_plain": ("gated_deltaproduct", dict(num_heads=2, head_dim=8, expand_v=1.5,
                                                            num_householder=3, use_output_gate=False)),
}  # fmt: skip
MIXER = {"delta_net": "deltanet", "gated_deltanet": "gated_deltanet", "gated_deltaproduct": "deltaproduct"}


def _sdpa(q, k, v, causal=True, window_size=(-1, -1), **_):
    """flash_attn_func's [B, T, H, K] interface, by torch's SDPA: causal, and with window_size = (w, 0) query i
    sees keys i - w .. i."""
    assert causal and window_size[1] in (-1, 0)
    i = torch.arange(q.shape[1])
    mask = i[:, None] >= i[None, :]
    if window_size[0] >= 0:
        mask &= i[:, None] - i[None, :] <= window_size[0]
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                          attn_mask=mask).transpose(1, 2)  # fmt: skip


@contextmanager
def flash_attn_standin():
    """fla's attention layer refuses to be built without flash-attn: let it, with SDPA as its kernel."""
    saved = fla_attn.flash_attn_func
    fla_attn.flash_attn_func = _sdpa
    try:
        yield
    finally:
        fla_attn.flash_attn_func = saved


def build_fla(case: str, seed: int = 0):
    """A 2-layer fla model of ``case`` in fp32, eval mode, with weights large enough that every path matters
    (fla's own init, std 0.02, leaves the activations nearly zero)."""
    model_type, kw = CASES[case]
    config_cls, model_cls = FLA[model_type]
    cfg = config_cls(hidden_size=D, num_hidden_layers=2, vocab_size=V, **kw)
    torch.manual_seed(seed)
    with warnings.catch_warnings(), flash_attn_standin():
        warnings.simplefilter("ignore")  # fla warns that there is no GPU, and about use_short_conv=False
        model = model_cls(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "conv1d" in name:
                p.normal_(0.0, 0.5)
            elif p.dim() == 2:
                p.normal_(0.0, 1.0 if "embeddings" in name else p.shape[1] ** -0.5)
            elif "norm" in name:
                p.normal_(1.0, 0.2)
    return model


def expected_tensors(case: str, fla_sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], set[str]]:
    """What statetrack's state dict must hold, written out independently of the converter: {name: tensor}, and
    the fla tensors it was made of."""
    model_type, kw = CASES[case]
    attn_layers = (kw.get("attn") or {}).get("layers", [])
    group = (kw.get("num_v_heads") or kw["num_heads"]) // kw["num_heads"]
    K = kw.get("head_dim", 0) or int(D * kw.get("expand_k", 1.0)) // kw["num_heads"]
    out, used = {}, set()

    def use(name):
        used.add(name)
        return fla_sd[name]

    def heads(w):  # value head i reads q/k head i // group
        return w.unflatten(0, (-1, K)).repeat_interleave(group, 0).flatten(0, 1)

    out["model.embeddings.weight"] = use("model.embeddings.weight")
    out["model.norm.weight"] = use("model.norm.weight")
    tied = kw.get("tie_word_embeddings")
    out["lm_head.weight"] = fla_sd["model.embeddings.weight"] if tied else use("lm_head.weight")
    for i in range(2):
        p = f"model.layers.{i}."
        out[p + "mixer_norm.weight"] = use(p + "attn_norm.weight")
        out[p + "mlp_norm.weight"] = use(p + "mlp_norm.weight")
        out[p + "mlp.gate_up.weight"] = torch.cat([use(p + "mlp.gate_proj.weight"), use(p + "mlp.up_proj.weight")])
        out[p + "mlp.down.weight"] = use(p + "mlp.down_proj.weight")
        if i in attn_layers:
            out[p + "mixer.qkv.weight"] = torch.cat([use(p + f"attn.{c}_proj.weight") for c in "qkv"])
            out[p + "mixer.o_proj.weight"] = use(p + "attn.o_proj.weight")
            continue
        for name in [n for n in fla_sd if n.startswith(p + "attn.")]:
            new = name.replace(".attn.", ".mixer.").replace("_conv1d.", "_conv.")
            shared = name.split(".")[-2] in ("q_proj", "k_proj", "q_conv1d", "k_conv1d")  # per q/k head
            out[new] = heads(use(name)) if group > 1 and shared else use(name)
    return out, used


def test_the_cases_cover_each_type_and_both_eigenvalue_ranges():
    assert {t for t, _ in CASES.values()} == set(FLA)
    for t in FLA:
        assert {bool(kw.get("allow_neg_eigval")) for tt, kw in CASES.values() if tt == t} == {True, False}


@pytest.mark.parametrize("case", list(CASES))
def test_save_convert_load(case, tmp_path):
    fla = build_fla(case)
    src, out = tmp_path / "fla", tmp_path / "statetrack"
    fla.save_pretrained(src)
    (src / "tokenizer.json").write_text('{"version": "1.0"}')
    fla_sd = load_file(str(src / "model.safetensors"))
    returned = convert_fla(src, out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert isinstance(model, StateTrackForCausalLM)
    assert (out / "tokenizer.json").read_text() == '{"version": "1.0"}'

    # every fla tensor used exactly once, each where it belongs
    want, used = expected_tensors(case, fla_sd)
    assert used == set(fla_sd)
    got = model.state_dict()
    assert set(got) == set(want)
    for name, t in want.items():
        assert got[name].shape == t.shape, name
        assert torch.equal(got[name], t), name
    for name, t in returned.state_dict().items():
        assert torch.equal(t, got[name]), name

    # the config
    model_type, kw = CASES[case]
    cfg, mixer = model.config, MIXER[model_type]
    s = cfg.mixer_settings[mixer]
    assert cfg.min_eigenvalue == (-1.0 if kw.get("allow_neg_eigval") else 0.0)
    assert s["min_eigenvalue"] == cfg.min_eigenvalue
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers) == (V, D, 2)
    assert cfg.intermediate_size == 256  # fla's rule: 2/3 * 4 * 32, rounded up to a multiple of 256
    assert cfg.tie_word_embeddings == bool(kw.get("tie_word_embeddings"))
    assert s["conv_bias"] is False and s["qk_norm_eps"] == 1e-6
    assert s["use_short_conv"] == kw.get("use_short_conv", True)
    assert s["n_heads"] == (kw.get("num_v_heads") or kw["num_heads"])
    attn = kw.get("attn")
    assert cfg.mixers == ["transformer" if attn and i in attn["layers"] else mixer for i in range(2)]
    if attn:
        t = cfg.mixer_settings["transformer"]
        assert (t["n_heads"], t["rope_base"]) == (attn["num_heads"], attn["rope_theta"])
        assert t["window"] == attn["window_size"]
    if model_type == "gated_deltaproduct":
        assert s["num_householder"] == kw["num_householder"] and s["use_gate"] == kw.get("use_forget_gate", False)

    ids = torch.randint(0, V, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, returned(ids).logits, rtol=0, atol=0)


@pytest.mark.skipif(INTERPRET, reason="this is the subprocess")
def test_logits_equal_flas_own_forward():
    """Runs ``test_logits_inside_interpreter`` in a subprocess with TRITON_INTERPRET=1."""
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    env.pop("PYTEST_XDIST_WORKER", None)
    cmd = [sys.executable, "-m", "pytest", __file__, "-q", "-x", "-p", "no:xdist", "-p", "no:cacheprovider",
           "-k", "inside_interpreter"]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and " passed" in res.stdout, res.stdout[-6000:] + res.stderr[-3000:]


def _interpreter_standins():
    import triton.runtime.autotuner as autotuner
    import triton.runtime.interpreter as interpreter

    autotuner.Autotuner.check_disk_cache = lambda self, *a, **k: False
    autotuner.Autotuner._bench = lambda self, *a, config, **k: [0.0, 0.0, 0.0]
    patch = interpreter._patch_lang_tensor

    def patched(tensor, scope):
        patch(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    interpreter._patch_lang_tensor = patched


@pytest.mark.skipif(not INTERPRET, reason="runs in the TRITON_INTERPRET=1 subprocess")
def test_logits_inside_interpreter():
    _interpreter_standins()
    torch.manual_seed(1)
    ids = torch.randint(0, V, (1, 6))
    errors = {}
    for case in CASES:
        fla = build_fla(case)
        ours = convert_fla_state_dict(fla.config.to_dict(), fla.state_dict())
        with torch.no_grad(), flash_attn_standin():
            ref = fla(ids).logits
            got = ours(ids).logits
        errors[case] = float((got - ref).abs().max() / ref.abs().max())
    assert max(errors.values()) < 1e-4, errors


# -- errors ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    fla = build_fla("gated_deltanet")
    return fla.config.to_dict(), dict(fla.state_dict())


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(model_type="mamba2"), "model_type = 'mamba2'"),
        (dict(output_gate_activation="sigmoid"), "output_gate_activation = 'sigmoid'"),
        (dict(hidden_act="powlu"), "hidden_act = 'powlu'"),
        (dict(attnres_block_size=2), "attnres_block_size = 2"),
        (dict(num_v_heads=3), "num_v_heads = 3"),
        (dict(head_dim=8, expand_v=0.3), "head_dim \\* expand_v"),
        (dict(some_new_field=1), "some_new_field = 1: not a field of fla 0.6.0's gated_deltanet"),
        (dict(attn=dict(layers=[0], num_heads=4, num_kv_heads=2)), "attn.num_kv_heads = 2: .*no grouped KV heads"),
        (dict(attn=dict(layers=[0], num_heads=4, qkv_bias=True)), "attn.qkv_bias"),
        (dict(attn=[dict(layers=[0], num_heads=4, window_size=64), dict(layers=[1], num_heads=4)]), "window"),
        (dict(attn=dict(layers=[0], num_heads=4, qk_norm=True)), "attn.qk_norm"),
        (dict(attn=[dict(layers=[0], num_heads=4), dict(layers=[1], num_heads=2)]), "attn\\[1\\]"),
        (dict(attn=dict(layers=[0], num_heads=3)), "attn.num_heads = 3 must divide"),
    ],
)
def test_config_fields_it_cannot_map_are_named(small, change, match):
    cfg, _ = small
    with pytest.raises(ValueError, match=match):
        config_from_fla({**cfg, **change})


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(qk_norm="sum"), "qk_norm = 'sum'"),
        (dict(qk_activation="relu"), "qk_activation = 'relu'"),
        (dict(use_beta=False), "use_beta = False"),
        (dict(expand_k=0.3), "expand_k"),
    ],
)
def test_delta_net_fields_it_cannot_map_are_named(change, match):
    cfg = build_fla("delta_net").config.to_dict()
    with pytest.raises(ValueError, match=match):
        config_from_fla({**cfg, **change})


def test_missing_extra_and_misshapen_tensors_are_named(small):
    cfg, sd = small
    name = "model.layers.1.attn.b_proj.weight"
    with pytest.raises(ValueError, match=f"no tensor '{name}'"):
        convert_fla_state_dict(cfg, {k: v for k, v in sd.items() if k != name})
    extra = "model.layers.0.attn.q_conv1d.bias"
    with pytest.raises(ValueError, match=f"tensor '{extra}' has no place"):
        convert_fla_state_dict(cfg, {**sd, extra: torch.zeros(16)})
    with pytest.raises(ValueError, match="model.layers.0.mixer.o_proj.weight has shape"):
        convert_fla_state_dict(cfg, {**sd, "model.layers.0.attn.o_proj.weight": torch.zeros(D, 8)})


def test_a_tied_head_that_differs_is_refused():
    fla = build_fla("gated_deltaproduct")  # tied
    sd = {**fla.state_dict(), "lm_head.weight": torch.zeros(V, D)}
    with pytest.raises(ValueError, match="tie_word_embeddings = True but"):
        convert_fla_state_dict(fla.config.to_dict(), sd)


def test_defaults_fill_fields_a_config_leaves_out(small):
    cfg, sd = small
    kept = {k: cfg[k] for k in ("model_type", "hidden_size", "num_hidden_layers", "vocab_size", "num_heads",
                                "head_dim", "allow_neg_eigval")}  # fmt: skip
    model = convert_fla_state_dict(kept, sd)  # expand_v 2, use_gate True, conv 4, MLP rule: fla 0.6.0's defaults
    assert model.config.mixer_settings["gated_deltanet"]["expand_v"] == 2.0


def test_keeps_dtypes_and_reads_shards(tmp_path):
    fla = build_fla("delta_net").to(torch.bfloat16)
    fla.save_pretrained(tmp_path / "fla", max_shard_size="20KB")
    assert (tmp_path / "fla" / "model.safetensors.index.json").is_file()
    model = convert_fla(tmp_path / "fla", tmp_path / "out")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        convert_fla(tmp_path, tmp_path / "out")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="no model.safetensors"):
        convert_fla(tmp_path, tmp_path / "out")
    with pytest.raises(ValueError, match="OUT_DIR must differ"):
        convert_fla(tmp_path, tmp_path)


# -- the command ----------------------------------------------------------------------------------------------


def test_cli_converts_and_fails_in_one_line(tmp_path, capsys):
    build_fla("delta_net").save_pretrained(tmp_path / "fla")
    assert main(["convert-fla", str(tmp_path / "fla"), str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "2 deltanet layers" in out and "min_eigenvalue -1.0" in out
    assert isinstance(AutoModelForCausalLM.from_pretrained(tmp_path / "out"), StateTrackForCausalLM)
    capsys.readouterr()  # the loading's progress bar

    cfg = json.loads((tmp_path / "fla" / "config.json").read_text())
    (tmp_path / "fla" / "config.json").write_text(json.dumps({**cfg, "qk_activation": "elu"}))
    assert main(["convert-fla", str(tmp_path / "fla"), str(tmp_path / "out2")]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "qk_activation = 'elu'" in captured.err
    assert captured.err.startswith("statetrack convert-fla: error: ")
    assert not (tmp_path / "out2").exists()
