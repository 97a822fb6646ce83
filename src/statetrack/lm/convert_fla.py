"""flash-linear-attention checkpoints as statetrack causal LMs: fla 0.6.0's DeltaNet, Gated DeltaNet and Gated
DeltaProduct (``model_type`` delta_net, gated_deltanet, gated_deltaproduct), hybrids with softmax attention
included, become :class:`~statetrack.models.StateTrackForCausalLM` with the same function of the tokens.

What maps (fla -> statetrack):
    model_type          delta_net -> mixer "deltanet", gated_deltanet -> "gated_deltanet",
                        gated_deltaproduct -> "deltaproduct" (``num_householder`` factors, ``use_forget_gate``
                        -> ``use_gate``)
    allow_neg_eigval    True -> min_eigenvalue = -1 (beta = 2 sigmoid), False -> 0 (beta = sigmoid)
    head sizes          K = head_dim (DeltaNet: hidden_size * expand_k / num_heads), V = K * expand_v
                        (DeltaNet: hidden_size * expand_v / num_heads) -> settings head_dim, expand_v
    num_v_heads         (Gated DeltaNet's grouped value heads) -> n_heads = num_v_heads, each q/k head's weights
                        copied to the value heads that share it: the same function, more q/k parameters
    use_gate / use_output_gate -> use_output_gate; use_short_conv, conv_size -> the same; fla's short convs
                        have no bias -> conv_bias = False; fla's L2 norm x / sqrt(|x|^2 + 1e-6) -> qk_norm_eps
    MLP                 intermediate_size, or fla's rule (2/3 hidden_ratio D rounded up to a multiple of 256)
    attn                {layers, num_heads, rope_theta, window_size} -> "transformer" at those layers
                        (n_heads, rope_base, window: both let a token see itself and window - 1 before it)
    the rest            vocab_size, hidden_size, num_hidden_layers, norm_eps, tie_word_embeddings,
                        initializer_range, use_cache, bos/eos/pad token ids
Tensors: ``model.layers.i.attn.*`` -> ``model.layers.i.mixer.*`` (``*_conv1d`` -> ``*_conv``; an attention
layer's q/k/v -> one ``qkv``), ``attn_norm`` -> ``mixer_norm``, the MLP's gate/up -> one ``gate_up``,
``down_proj`` -> ``down``; each tensor keeps its dtype. Every fla tensor is used exactly once.

What raises (ValueError naming the field, layer or tensor): another model_type; a field value statetrack does
not implement (qk_norm "sum", qk_activation other than silu, use_beta False, hidden_act "powlu", a sigmoid
output gate, attnres_block_size, attention with grouped KV heads or qkv bias, attention layers with different
heads, rope_theta or window); a field fla 0.6.0 does not have; a missing tensor, a tensor of the
wrong shape, a tensor left over.
Fields that change only how fla computes, not what (attn_mode, fuse_*, use_l2warp, max_position_embeddings)
are ignored, and so is DeltaNet's use_output_norm, which fla 0.6.0's DeltaNet layer accepts and never reads
(its output norm is always there).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from statetrack.models import StateTrackConfig, StateTrackForCausalLM

#: fla model_type -> statetrack mixer
MIXER_OF = {"delta_net": "deltanet", "gated_deltanet": "gated_deltanet", "gated_deltaproduct": "deltaproduct"}

# fla 0.6.0's defaults (its configuration_*.py), for fields a config.json leaves out
_COMMON = dict(
    vocab_size=32000, hidden_size=2048, hidden_ratio=4, intermediate_size=None, hidden_act="swish", norm_eps=1e-6,
    attn=None, use_cache=True, pad_token_id=None, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
    initializer_range=0.02, allow_neg_eigval=False, use_short_conv=True, conv_size=4, attnres_block_size=None,
)  # fmt: skip
DEFAULTS = {
    "delta_net": dict(_COMMON, num_hidden_layers=24, num_heads=16, expand_k=1.0, expand_v=1.0, use_gate=False,
                      use_beta=True, use_output_norm=True, qk_norm="l2", qk_activation="silu"),
    "gated_deltanet": dict(_COMMON, num_hidden_layers=21, num_heads=6, head_dim=256, expand_v=2.0, num_v_heads=None,
                           use_gate=True, output_gate_activation="swish"),
    "gated_deltaproduct": dict(_COMMON, num_hidden_layers=21, num_heads=6, head_dim=256, expand_v=2.0,
                               use_output_gate=True, use_forget_gate=False, num_householder=1),
}  # fmt: skip
# fields that choose fla's kernels, fusions or loss, not the function: read and ignored
IGNORED = {"attn_mode", "fuse_norm", "fuse_swiglu", "fuse_cross_entropy", "fuse_linear_cross_entropy", "use_l2warp",
           "max_position_embeddings"}  # fmt: skip
# fields of every Hugging Face config (and what save_pretrained adds); none changes the function
_HF_EXTRA = {"architectures", "model_type", "transformers_version", "dtype", "torch_dtype", "_name_or_path",
             "auto_map", "_attn_implementation_autoset", "output_attentions", "output_hidden_states", "return_dict",
             "chunk_size_feed_forward", "is_encoder_decoder", "id2label", "label2id", "problem_type",
             "tokenizer_class", "prefix", "sep_token_id", "decoder_start_token_id", "task_specific_params",
             "finetuning_task", "tie_encoder_decoder", "add_cross_attention", "cross_attention_hidden_size",
             "is_decoder", "pruned_heads", "torchscript", "num_labels"}  # fmt: skip
# attention spec keys fla 0.6.0 reads, and their defaults
ATTN_DEFAULTS = dict(num_kv_heads=None, qkv_bias=False, window_size=None, rope_theta=10000.0)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
                   "added_tokens.json", "vocab.json", "merges.txt", "vocab.txt", "chat_template.jinja",
                   "chat_template.json")  # fmt: skip


def _hf_generic_fields() -> set[str]:
    from transformers import PretrainedConfig

    return set(PretrainedConfig().to_dict()) | _HF_EXTRA


class _Fields:
    """An fla config dict read field by field: ``get`` takes a field (fla's default if absent) and marks it read;
    ``unread`` is what nothing read."""

    def __init__(self, config: Mapping[str, Any], model_type: str):
        self.values, self.defaults, self.read = dict(config), DEFAULTS[model_type], set()

    def get(self, name: str):
        self.read.add(name)
        return self.values.get(name, self.defaults.get(name))

    def require(self, name: str, allowed: tuple, why: str):
        value = self.get(name)
        if value not in allowed:
            raise ValueError(f"{name} = {value!r}: {why} (statetrack maps {' or '.join(map(repr, allowed))})")
        return value

    def unread(self) -> list[str]:
        return sorted(set(self.values) - self.read - IGNORED - _hf_generic_fields())


def _whole(value: float, what: str) -> int:
    if not math.isclose(value, round(value)) or round(value) < 1:
        raise ValueError(f"{what} = {value} is not a whole number >= 1")
    return round(value)


def _mixer_settings(f: _Fields, model_type: str, D: int) -> tuple[dict[str, Any], int]:
    """The statetrack settings of the linear-RNN layers, and the number of value heads that share a q/k head."""
    H = f.get("num_heads")
    if model_type == "delta_net":
        f.require("qk_norm", ("l2",), "statetrack's DeltaNet L2-normalises q and k")
        f.require("qk_activation", ("silu",), "statetrack's DeltaNet applies SiLU to q and k")
        f.require("use_beta", (True,), "statetrack's DeltaNet always learns beta")
        f.get("use_output_norm")  # read, and ignored: fla 0.6.0's DeltaNet layer always normalises its output
        key_dim = _whole(D * f.get("expand_k"), "hidden_size * expand_k")
        value_dim = _whole(D * f.get("expand_v"), "hidden_size * expand_v")
        if key_dim % H or value_dim % H:
            raise ValueError(f"num_heads = {H} must divide the key dim {key_dim} and the value dim {value_dim}")
        K, V, HV, gate = key_dim // H, value_dim // H, H, f.get("use_gate")
        extra = {}
    else:
        K = f.get("head_dim")
        V = _whole(K * f.get("expand_v"), "head_dim * expand_v")
        HV = H
        if model_type == "gated_deltanet":
            HV = f.get("num_v_heads") or H
            if HV < H or HV % H:
                raise ValueError(f"num_v_heads = {HV} must be a multiple of num_heads = {H}")
            f.require("output_gate_activation", ("swish", "silu"), "statetrack's output gate is SiLU")
            gate, extra = f.get("use_gate"), {}
        else:
            gate = f.get("use_output_gate")
            extra = dict(num_householder=f.get("num_householder"), use_gate=bool(f.get("use_forget_gate")))
    settings = dict(
        n_heads=HV, head_dim=K, expand_v=V / K, min_eigenvalue=-1.0 if f.get("allow_neg_eigval") else 0.0,
        use_output_gate=bool(gate), use_short_conv=bool(f.get("use_short_conv")), conv_size=f.get("conv_size"),
        conv_bias=False, qk_norm_eps=1e-6, norm_eps=f.get("norm_eps"), **extra,
    )  # fmt: skip
    return settings, HV // H


def _attention(f: _Fields, n_layers: int, D: int) -> tuple[list[int], dict[str, Any] | None]:
    """The layers fla gives softmax attention, and statetrack's Attention settings for them."""
    attn = f.get("attn")
    if attn is None:
        return [], None
    specs = [attn] if isinstance(attn, Mapping) else list(attn)
    layers, settings = [], None
    for i, spec in enumerate(specs):
        where = "attn" if isinstance(attn, Mapping) else f"attn[{i}]"
        if not isinstance(spec, Mapping) or "layers" not in spec or "num_heads" not in spec:
            raise ValueError(f"{where} must be a dict with 'layers' and 'num_heads', got {spec!r}")
        unknown = sorted(set(spec) - {"layers", "num_heads", *ATTN_DEFAULTS})
        if unknown:
            raise ValueError(f"{where}.{unknown[0]}: not a field of fla 0.6.0's attention; cannot map it")
        s = dict(ATTN_DEFAULTS, **spec)
        H = s["num_heads"]
        if s["num_kv_heads"] not in (None, H):
            raise ValueError(f"{where}.num_kv_heads = {s['num_kv_heads']}: statetrack's attention has no grouped "
                             f"KV heads (num_heads = {H})")  # fmt: skip
        if s["qkv_bias"]:
            raise ValueError(f"{where}.qkv_bias = True: statetrack's attention has no q/k/v bias")
        if D % H:
            raise ValueError(f"{where}.num_heads = {H} must divide hidden_size = {D}")
        this = dict(n_heads=H, rope_base=float(s["rope_theta"]), window=s["window_size"])
        if settings is not None and this != settings:
            raise ValueError(f"{where} = {this} differs from the first attention spec {settings}: statetrack gives "
                             "every attention layer the same heads, rope_theta and window")  # fmt: skip
        settings = this
        for layer in s["layers"]:
            if not (isinstance(layer, int) and 0 <= layer < n_layers) or layer in layers:
                raise ValueError(f"{where}.layers: {layer!r} is not a new layer index in [0, {n_layers})")
            layers.append(layer)
    return sorted(layers), settings


def config_from_fla(config: Mapping[str, Any]) -> tuple[StateTrackConfig, int]:
    """The StateTrackConfig of an fla 0.6.0 config dict (its config.json), and the number of value heads that
    share each q/k head (1 unless Gated DeltaNet's ``num_v_heads`` > ``num_heads``). Raises ValueError naming the
    field that cannot be mapped."""
    model_type = config.get("model_type")
    if model_type not in MIXER_OF:
        raise ValueError(f"model_type = {model_type!r}: statetrack converts fla's {sorted(MIXER_OF)}")
    f = _Fields(config, model_type)
    D, n_layers = f.get("hidden_size"), f.get("num_hidden_layers")
    if f.get("attnres_block_size") is not None:
        raise ValueError(f"attnres_block_size = {f.get('attnres_block_size')}: statetrack's blocks have plain "
                         "residuals (no attention residuals)")  # fmt: skip
    f.require("hidden_act", ("swish",), "statetrack's MLP is SwiGLU")
    settings, group = _mixer_settings(f, model_type, D)
    attn_layers, attn_settings = _attention(f, n_layers, D)
    mixer = MIXER_OF[model_type]
    inter, ratio = f.get("intermediate_size"), f.get("hidden_ratio")
    if inter is None:  # fla's GatedMLP rule
        inter = int(D * (ratio or 4) * 2 / 3)
        inter = 256 * ((inter + 255) // 256)
    rest = {k: f.get(k) for k in ("vocab_size", "norm_eps", "initializer_range", "use_cache", "pad_token_id",
                                  "bos_token_id", "eos_token_id")}  # fmt: skip
    tied = bool(f.get("tie_word_embeddings"))
    unread = f.unread()
    if unread:
        raise ValueError(f"{unread[0]} = {config[unread[0]]!r}: not a field of fla 0.6.0's {model_type}; cannot map it")
    layer_mixers = None
    mixer_settings = {mixer: settings}
    if attn_layers:
        layer_mixers = ["transformer" if i in attn_layers else mixer for i in range(n_layers)]
        mixer_settings = {"transformer": attn_settings, **({mixer: settings} if mixer in layer_mixers else {})}
    cfg = StateTrackConfig(hidden_size=D, num_hidden_layers=n_layers, mixer=mixer, layer_mixers=layer_mixers,
                           mixer_settings=mixer_settings, intermediate_size=inter, tie_word_embeddings=tied,
                           **rest)  # fmt: skip
    return cfg, group


def _tensors(cfg: StateTrackConfig, sd: Mapping[str, torch.Tensor], group: int) -> dict[str, torch.Tensor]:
    """statetrack's state dict from fla's ``sd``; each fla tensor is taken once (a missing one raises)."""
    taken: set[str] = set()

    def take(name: str, why: str) -> torch.Tensor:
        if name not in sd:
            raise ValueError(f"the fla checkpoint has no tensor {name!r} (statetrack's {why})")
        if name in taken:  # pragma: no cover - a bug of this module
            raise AssertionError(f"{name} taken twice")
        taken.add(name)
        return sd[name]

    def per_kv_head(w: torch.Tensor, K: int) -> torch.Tensor:
        # Gated DeltaNet's grouped value heads: value head i reads q/k head i // group (fla's kernels)
        return w if group == 1 else w.unflatten(0, (-1, K)).repeat_interleave(group, 0).flatten(0, 1)

    out: dict[str, torch.Tensor] = {"model.embeddings.weight": take("model.embeddings.weight", "embeddings")}
    for i, name in enumerate(cfg.mixers):
        pre = f"model.layers.{i}."  # the same in both
        out[pre + "mixer_norm.weight"] = take(pre + "attn_norm.weight", f"layer {i} mixer_norm")
        out[pre + "mlp_norm.weight"] = take(pre + "mlp_norm.weight", f"layer {i} mlp_norm")
        gate_up = [take(pre + f"mlp.{p}.weight", f"layer {i} mlp.gate_up") for p in ("gate_proj", "up_proj")]
        out[pre + "mlp.gate_up.weight"] = torch.cat(gate_up)
        out[pre + "mlp.down.weight"] = take(pre + "mlp.down_proj.weight", f"layer {i} mlp.down")
        a, m = pre + "attn.", pre + "mixer."
        if name == "transformer":
            qkv = [take(a + p + ".weight", f"layer {i} mixer.qkv") for p in ("q_proj", "k_proj", "v_proj")]
            out[m + "qkv.weight"] = torch.cat(qkv)
            out[m + "o_proj.weight"] = take(a + "o_proj.weight", f"layer {i} mixer.o_proj")
            continue
        s = cfg.mixer_settings[name]
        K = s["head_dim"]
        wanted = ["q_proj", "k_proj", "v_proj", "b_proj", "o_proj", "o_norm"]
        if name == "gated_deltanet" or s.get("use_gate"):
            wanted += ["a_proj", "A_log", "dt_bias"]
        if s["use_output_gate"]:
            wanted.append("g_proj")
        for p in wanted:
            key = p if p in ("A_log", "dt_bias") else p + ".weight"
            t = take(a + key, f"layer {i} mixer.{key}")
            out[m + key] = per_kv_head(t, K) if p in ("q_proj", "k_proj") else t
        if s["use_short_conv"]:
            for c in "qkv":
                t = take(a + f"{c}_conv1d.weight", f"layer {i} mixer.{c}_conv.weight")
                out[m + f"{c}_conv.weight"] = per_kv_head(t, K) if c in "qk" else t
    out["model.norm.weight"] = take("model.norm.weight", "final norm")
    if not cfg.tie_word_embeddings:
        out["lm_head.weight"] = take("lm_head.weight", "lm_head")
    elif "lm_head.weight" in sd:  # a tied head saved anyway: it must be the embeddings
        if not torch.equal(take("lm_head.weight", "lm_head"), out["model.embeddings.weight"]):
            raise ValueError("tie_word_embeddings = True but the checkpoint's lm_head.weight differs from "
                             "model.embeddings.weight")  # fmt: skip
    left = sorted(set(sd) - taken)
    if left:
        more = f" (and {len(left) - 1} more)" if len(left) > 1 else ""
        raise ValueError(f"the fla checkpoint's tensor {left[0]!r}{more} has no place in statetrack's model")
    return out


def convert_fla_state_dict(config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> StateTrackForCausalLM:
    """An fla 0.6.0 config dict and its state dict -> StateTrackForCausalLM (eval mode) computing the same
    function; each tensor keeps its dtype and device. Raises ValueError naming the field or tensor it cannot map."""
    cfg, group = config_from_fla(config)
    with torch.device("meta"):
        model = StateTrackForCausalLM(cfg)
    tensors = _tensors(cfg, state_dict, group)
    want = model.state_dict()
    for name, t in tensors.items():
        if name not in want:  # pragma: no cover - a bug of this module
            raise AssertionError(f"statetrack's model has no {name}")
        if tuple(t.shape) != tuple(want[name].shape):
            raise ValueError(f"tensor for {name} has shape {list(t.shape)}, statetrack's model wants "
                             f"{list(want[name].shape)} (from the config)")  # fmt: skip
    if cfg.tie_word_embeddings:
        tensors["lm_head.weight"] = tensors["model.embeddings.weight"]
    missing = sorted(set(want) - set(tensors))
    if missing:  # pragma: no cover - a bug of this module
        raise AssertionError(f"no fla tensor mapped to {missing}")
    model.load_state_dict({k: v.detach().clone() for k, v in tensors.items()}, strict=True, assign=True)
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.model.embeddings.weight
    left = [n for n, b in model.named_buffers() if b.is_meta]
    if left:  # pragma: no cover - a layer with buffers outside the state dict: give them their values here
        raise AssertionError(f"buffers {left} have no values after building on the meta device")
    return model.eval()


def load_fla_checkpoint(src_dir: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config dict, state dict) of an fla Hugging Face folder: config.json and model.safetensors, or the shards
    of model.safetensors.index.json."""
    from safetensors.torch import load_file

    src = Path(src_dir)
    if not (src / "config.json").is_file():
        raise ValueError(f"{src} has no config.json (an fla Hugging Face checkpoint folder has one)")
    config = json.loads((src / "config.json").read_text())
    index = src / "model.safetensors.index.json"
    if (src / "model.safetensors").is_file():
        files = [src / "model.safetensors"]
    elif index.is_file():
        files = [src / f for f in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    else:
        raise ValueError(f"{src} has no model.safetensors (nor model.safetensors.index.json)")
    sd: dict[str, torch.Tensor] = {}
    for file in files:
        sd.update(load_file(str(file)))
    return config, sd


def convert_fla(src_dir: str | Path, out_dir: str | Path) -> StateTrackForCausalLM:
    """Convert the fla checkpoint in ``src_dir`` and ``save_pretrained`` it into ``out_dir`` (with the tokenizer
    files of ``src_dir``, if any); returns the model. Raises ValueError naming what it cannot map."""
    src, out = Path(src_dir), Path(out_dir)
    if out.resolve() == src.resolve():
        raise ValueError(f"OUT_DIR must differ from SRC_DIR ({src}): the conversion would overwrite its config.json")
    model = convert_fla_state_dict(*load_fla_checkpoint(src))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, out / name)
    return model
