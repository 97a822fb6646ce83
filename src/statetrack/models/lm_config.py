"""StateTrackConfig: the Hugging Face configuration of statetrack's causal language models.

A model is ``num_hidden_layers`` pre-norm blocks (mixer, then SwiGLU MLP) between an embedding and an LM head.
Layer i's mixer is ``layer_mixers[i]`` (every layer ``mixer`` when None), built from the width and
``mixer_settings[name]``, the registered settings of that mixer (statetrack.layers: e.g. DeltaNetSettings), so a
hybrid names its mixers per layer and gives each mixer's settings once. The config that is saved holds every
mixer's settings in full (defaults written out), so a checkpoint says exactly what it is.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from statetrack.layers import MIXERS, mixer_settings

from .backbone import mlp_hidden_size


class StateTrackConfig(PretrainedConfig):
    """Configuration of :class:`StateTrackForCausalLM`.

    Args:
        vocab_size, hidden_size (D), num_hidden_layers: vocabulary, width, depth.
        mixer: the mixer of every layer (a name in statetrack.layers.MIXERS) unless ``layer_mixers`` is given.
        layer_mixers: one mixer name per layer, e.g. DeltaNet with attention every 4th layer (a hybrid).
        mixer_settings: {mixer name: its settings (dict)}; what is left out takes the layer's defaults.
        min_eigenvalue: shorthand: written into the settings of every mixer that has one (an explicit, different
            value there raises). After construction it is the common value, or None if the mixers differ.
        mlp_ratio: SwiGLU hidden size = round8(2/3 * mlp_ratio * D), unless ``intermediate_size`` is given;
            0 = no MLP.
        norm_eps: RMSNorm epsilon of the blocks and the final norm. initializer_range: std of the normal
            initialisation of embeddings and linear weights (output projections scaled by 1/sqrt(2 layers)).
        tie_word_embeddings: share the embedding and LM head weights.
        loss_chunk_size: rows per chunk of the fused linear + cross-entropy (None: its own rule).
        decode_graphs: "auto" | "on" | "off": replay each one-token decoding step of the whole model as one CUDA
            graph (models/decode_graph.py). auto: on for CUDA inputs without gradients when no layer is attention
            (whose cache grows every token); "on" raises where that does not hold.
    """

    model_type = "statetrack"
    keys_to_ignore_at_inference = ["cache"]

    def __init__(
        self,
        vocab_size: int = 32000,
        hidden_size: int = 1024,
        num_hidden_layers: int = 24,
        mixer: str = "deltanet",
        layer_mixers: list[str] | None = None,
        mixer_settings: dict[str, dict[str, Any]] | None = None,
        min_eigenvalue: float | None = None,
        mlp_ratio: float = 4.0,
        intermediate_size: int | None = None,
        norm_eps: float = 1e-6,
        initializer_range: float = 0.02,
        tie_word_embeddings: bool = False,
        loss_chunk_size: int | None = None,
        decode_graphs: str = "auto",
        use_cache: bool = True,
        pad_token_id: int | None = None,
        bos_token_id: int | None = 1,
        eos_token_id: int | None = 2,
        **kwargs,
    ):
        self.vocab_size, self.hidden_size, self.num_hidden_layers = vocab_size, hidden_size, num_hidden_layers
        self.mixer, self.layer_mixers = mixer, None if layer_mixers is None else list(layer_mixers)
        self.mlp_ratio, self.intermediate_size, self.norm_eps = mlp_ratio, intermediate_size, norm_eps
        self.initializer_range, self.loss_chunk_size, self.use_cache = initializer_range, loss_chunk_size, use_cache
        self.decode_graphs = decode_graphs
        self._check_shapes()
        self.mixer_settings = self._resolve_settings(dict(mixer_settings or {}), min_eigenvalue)
        values = {s["min_eigenvalue"] for s in self.mixer_settings.values() if "min_eigenvalue" in s}
        self.min_eigenvalue = values.pop() if len(values) == 1 else None
        super().__init__(
            pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings, **kwargs,
        )  # fmt: skip

    # -- checks ------------------------------------------------------------------------------------------------

    def _check_shapes(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if self.mlp_ratio < 0:
            raise ValueError(f"mlp_ratio must be >= 0, got {self.mlp_ratio}")
        if self.intermediate_size is not None and self.intermediate_size < 1:
            raise ValueError(f"intermediate_size must be >= 1 or None, got {self.intermediate_size}")
        if self.loss_chunk_size is not None and self.loss_chunk_size < 1:
            raise ValueError(f"loss_chunk_size must be >= 1 or None, got {self.loss_chunk_size}")
        if self.decode_graphs not in ("auto", "on", "off"):
            raise ValueError(f"decode_graphs must be 'auto', 'on' or 'off', got {self.decode_graphs!r}")
        if self.layer_mixers is not None and len(self.layer_mixers) != self.num_hidden_layers:
            raise ValueError(
                f"layer_mixers has {len(self.layer_mixers)} entries but num_hidden_layers = {self.num_hidden_layers}"
            )
        for i, name in enumerate(self.mixers):
            if name not in MIXERS:
                where = f"layer_mixers[{i}]" if self.layer_mixers is not None else "mixer"
                raise ValueError(f"{where}: unknown mixer {name!r}; choose one of {sorted(MIXERS)}")

    def _resolve_settings(self, given: dict, min_eigenvalue: float | None) -> dict[str, dict[str, Any]]:
        used = list(dict.fromkeys(self.mixers))
        extra = sorted(set(given) - set(used))
        if extra:
            raise ValueError(f"mixer_settings has settings for {extra}, which no layer uses (layers use {used})")
        out = {}
        for name in used:
            values = dict(given.get(name) or {})
            fields = MIXERS[name].Settings.names()
            if min_eigenvalue is not None and "min_eigenvalue" in fields:
                if values.get("min_eigenvalue", min_eigenvalue) != min_eigenvalue:
                    raise ValueError(
                        f"min_eigenvalue = {min_eigenvalue} but mixer_settings[{name!r}]['min_eigenvalue'] = "
                        f"{values['min_eigenvalue']}; give one"
                    )
                values["min_eigenvalue"] = min_eigenvalue
            try:
                s = mixer_settings(name, values)
                s.check(self.hidden_size)
            except (TypeError, ValueError) as e:
                raise type(e)(f"mixer_settings[{name!r}]: {e}") from None
            out[name] = s.to_dict()
        return out

    # -- derived -----------------------------------------------------------------------------------------------

    @property
    def mixers(self) -> list[str]:
        """The mixer of each layer."""
        return list(self.layer_mixers) if self.layer_mixers is not None else [self.mixer] * self.num_hidden_layers

    @property
    def mlp_hidden(self) -> int:
        """The SwiGLU hidden size (0: no MLP)."""
        if self.intermediate_size is not None:
            return self.intermediate_size
        return mlp_hidden_size(self.hidden_size, self.mlp_ratio)
