"""Hugging Face causal language models from every statetrack mixer (and hybrids of them).

Shapes: input_ids [B, T] -> logits [B, T, V]. Packed documents: ``cu_seqlens`` [N + 1] with B = 1, or
``position_ids`` that restart at 0, or a padded batch's ``attention_mask``; no state and no convolution window
crosses a document boundary, and the loss never asks a document to predict the next one's first token.
The generation cache (:class:`RecurrentCache`) holds each layer's state: recurrent state and conv window for
the linear RNNs, keys and values for attention layers.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from statetrack.layers import RMSNorm, State, build_mixer
from statetrack.layers.varlen import cu_seqlens_from_position_ids
from statetrack.ops import linear_cross_entropy

from .backbone import Block
from .decode_graph import DecodeGraphs
from .lm_config import StateTrackConfig

IGNORE_INDEX = -100
# the last projection of each mixer and of the MLP (scaled down at initialisation, as in fla / GPT-2)
OUTPUT_PROJECTIONS = ("mixer.o_proj", "mixer.out_proj", "mlp.down")


class RecurrentCache:
    """The decoding state of a whole model: one mixer state (a dict of tensors, batch first) per layer and the
    number of tokens seen. What ``generate`` threads from step to step."""

    is_compileable = False

    def __init__(self, states: list[State | None] | None = None, seen_tokens: int = 0):
        self.states, self.seen_tokens = states, seen_tokens

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Keep batch rows ``beam_idx`` (beam search)."""
        self.states = [{k: v.index_select(0, beam_idx.to(v.device)) for k, v in s.items()} for s in self.states]

    def __len__(self) -> int:
        return 0 if self.states is None else len(self.states)


class StateTrackPreTrainedModel(PreTrainedModel):
    config_class = StateTrackConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["Block"]
    _supports_cache_class = False

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the model makes its own RecurrentCache

    def _init_weights(self, module: nn.Module) -> None:
        """fla-like: embeddings and linear weights ~ N(0, initializer_range), output projections of each block
        (mixer and MLP) scaled by 1 / sqrt(2 * layers); what a mixer initialises its own way (decay rates, step
        sizes, conv kernels, gate biases, norms) keeps the layer's initialisation."""
        std = self.config.initializer_range
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, std)
        elif isinstance(module, nn.Linear) and not getattr(module, "keep_init", False):
            scale = 1 / math.sqrt(2 * self.config.num_hidden_layers) if getattr(module, "is_output", False) else 1.0
            nn.init.normal_(module.weight, 0.0, std * scale)


class StateTrackModel(StateTrackPreTrainedModel):
    """Embedding, blocks, final norm: input_ids [B, T] -> hidden states [B, T, D]."""

    fused_ops = Block.fused_ops  # the final norm's backend (as the blocks')

    def __init__(self, config: StateTrackConfig):
        super().__init__(config)
        D = config.hidden_size
        self.embeddings = nn.Embedding(config.vocab_size, D)
        self.layers = nn.ModuleList(
            Block(D, build_mixer(name, D, config.mixer_settings[name]), config.mlp_hidden, config.norm_eps)
            for name in config.mixers
        )
        self.norm = RMSNorm(D, config.norm_eps)
        for name, module in self.layers.named_modules():  # what writes into the residual stream
            module.is_output = name.endswith(OUTPUT_PROJECTIONS)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings

    def set_input_embeddings(self, value):
        self.embeddings = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cu_seqlens: torch.Tensor | None = None,
        cache: RecurrentCache | None = None,
        use_cache: bool | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        use_cache = self.config.use_cache if use_cache is None else use_cache
        use_cache = use_cache and not self.training
        x = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        B, T = x.shape[:2]
        past = cache.states if cache is not None and cache.states is not None else None
        pack = _Packing.resolve(x, attention_mask, position_ids, cu_seqlens, past is not None)
        if pack is not None:
            x = pack.pack(x)
            if pack.index is None:  # several documents per row: no row has one state to continue from
                use_cache = False
        hidden = [x] if output_hidden_states else None
        states = []
        for i, block in enumerate(self.layers):
            st = None if past is None else past[i]
            if pack is None and T == 1 and st is not None:  # decoding: the mixers' one-token step
                y, st = block.step(x[:, 0], st)
                x = y[:, None]
            elif self.gradient_checkpointing and self.training:
                x, st = self._gradient_checkpointing_func(block.__call__, x, st, use_cache, None if pack is None
                                                          else pack.cu_seqlens)  # fmt: skip
            else:
                x, st = block(x, st, use_cache, None if pack is None else pack.cu_seqlens)
            states.append(st)
            if hidden is not None:
                hidden.append(x)
        x = self.norm(x, backend=self.fused_ops)
        if pack is not None:
            x = pack.unpack(x)
        new_cache = None
        if use_cache:
            new_cache = RecurrentCache(states, (0 if cache is None else cache.seen_tokens) + T)
        out = BaseModelOutputWithPast(last_hidden_state=x, cache=new_cache,
                                      hidden_states=None if hidden is None else tuple(hidden))  # fmt: skip
        out.next_token_kept = None if pack is None else pack.next_token_kept()
        return out


class _Packing:
    """How a batch is packed into one row of documents, and back.

    cu_seqlens given: B = 1 and the row is used as it is. position_ids that restart: the rows laid end to end,
    documents starting where position_ids = 0. An attention_mask with zeros (a padded batch): the valid tokens of
    each row form one document; outputs are scattered back (zeros at padding)."""

    def __init__(self, cu_seqlens: torch.Tensor, index: torch.Tensor | None, shape: tuple[int, int]):
        self.cu_seqlens, self.index, self.shape = cu_seqlens, index, shape

    @classmethod
    def resolve(cls, x, attention_mask, position_ids, cu_seqlens, has_cache: bool):
        B, T = x.shape[:2]
        if cu_seqlens is not None:
            if has_cache:
                raise ValueError("cu_seqlens: packed documents start from empty states; do not pass a cache")
            if B != 1:
                raise ValueError(f"cu_seqlens: the batch must be one packed row (B = 1), got B = {B}")
            if int(cu_seqlens[-1]) != T:
                raise ValueError(f"cu_seqlens must end at the row length T = {T}, got {int(cu_seqlens[-1])}")
            return cls(cu_seqlens.to(x.device), None, (B, T))
        if attention_mask is not None and attention_mask.dim() == 2:
            new = attention_mask[:, -T:].bool()
            if not bool(new.all()):
                if has_cache:
                    raise ValueError("attention_mask: new tokens after a cache must all be real (mask 1)")
                lens = new.sum(1)
                cu = torch.zeros(B + 1, dtype=torch.int32, device=x.device)
                cu[1:] = lens.cumsum(0)
                return cls(cu, new.reshape(-1).nonzero().flatten(), (B, T))
        if position_ids is not None and not has_cache and T > 1 and bool((position_ids[:, 1:] == 0).any()):
            return cls(cu_seqlens_from_position_ids(position_ids).to(x.device), None, (B, T))
        return None

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        if self.index is None:
            return x.reshape(1, -1, *x.shape[2:])
        return x.reshape(-1, *x.shape[2:]).index_select(0, self.index)[None]

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        B, T = self.shape
        if self.index is None:
            return x.reshape(B, T, *x.shape[2:])
        out = x.new_zeros(B * T, *x.shape[2:]).index_copy(0, self.index, x[0])
        return out.reshape(B, T, *x.shape[2:])

    def next_token_kept(self) -> torch.Tensor:
        """[B, T - 1] bool: whether position t may be trained to predict token t + 1 (both in one document)."""
        B, T = self.shape
        if self.index is not None:  # a padded batch: both positions real
            real = torch.zeros(B * T, dtype=torch.bool, device=self.cu_seqlens.device)
            real[self.index] = True
            real = real.view(B, T)
            return real[:, :-1] & real[:, 1:]
        starts = torch.zeros(B * T, dtype=torch.bool, device=self.cu_seqlens.device)
        starts[self.cu_seqlens[:-1].long()] = True
        return ~starts.view(B, T)[:, 1:]


class StateTrackForCausalLM(StateTrackPreTrainedModel, GenerationMixin):
    """StateTrackModel with an LM head: input_ids [B, T] -> logits [B, T, V]; with ``labels`` [B, T] the mean
    next-token cross-entropy (labels shifted inside; ``ignore_index`` -100), by a fused linear + cross-entropy
    that never holds the logits of the whole batch in fp32."""

    _tied_weights_keys = {"lm_head.weight": "model.embeddings.weight"}

    def __init__(self, config: StateTrackConfig):
        super().__init__(config)
        self.model = StateTrackModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self._decode_graphs = DecodeGraphs(self.decode_step, self.parameters)
        self.post_init()

    def decode_step(self, token: torch.Tensor, states: list[State]) -> tuple[torch.Tensor, list[State]]:
        """The eager one-token step of the whole model: token [B] -> (logits [B, V], new states); the forward's
        decoding path (every layer's ``step()``)."""
        out = self.model(token[:, None], cache=RecurrentCache(states), use_cache=True)
        return self.lm_head(out.last_hidden_state[:, 0]), out.cache.states

    def _graphable(self, input_ids, cache, labels, model_kwargs: dict) -> bool:
        """Whether this forward is a one-token decoding step that replays a CUDA graph (config.decode_graphs)."""
        mode = self.config.decode_graphs
        if mode == "off" or cache is None or cache.states is None or input_ids is None:
            return False
        mask = model_kwargs.get("attention_mask")
        plain = all(model_kwargs.get(k) is None for k in ("cu_seqlens", "inputs_embeds", "output_hidden_states"))
        step = input_ids.shape[1] == 1 and labels is None and plain
        if mask is not None and not bool(mask[:, -1].all()):
            step = False
        why = None
        if input_ids.device.type != "cuda":
            why = "the inputs are not on a CUDA device"
        elif torch.is_grad_enabled():
            why = "gradients are enabled (decode under torch.no_grad(), as generate() does)"
        elif "transformer" in self.config.mixers:
            why = "attention layers' key/value caches grow every token"
        if mode == "on" and step and why is not None:
            raise ValueError(f"decode_graphs='on' but {why}")
        return step and why is None

    def _apply(self, fn, *args, **kwargs):  # .to() / .cuda() / .half(): recorded graphs read the old weights
        self._decode_graphs.clear()
        return super()._apply(fn, *args, **kwargs)

    def get_input_embeddings(self):
        return self.model.embeddings

    def set_input_embeddings(self, value):
        self.model.embeddings = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        logits_to_keep: int = 0,
        cache: RecurrentCache | None = None,
        **model_kwargs,
    ) -> CausalLMOutputWithPast:
        """Everything :meth:`StateTrackModel.forward` takes (attention_mask, position_ids, cu_seqlens, use_cache,
        inputs_embeds, output_hidden_states), plus ``labels`` and ``logits_to_keep`` > 0: logits of the last that
        many positions only (generation). With ``labels`` in training mode, logits are not computed (None): the
        fused loss never forms them."""
        if self._graphable(input_ids, cache, labels, model_kwargs):
            logits, states = self._decode_graphs(input_ids[:, 0], cache.states)
            return CausalLMOutputWithPast(logits=logits[:, None], cache=RecurrentCache(states, cache.seen_tokens + 1))
        out = self.model(input_ids, cache=cache, **model_kwargs)
        h = out.last_hidden_state
        loss = None
        if labels is not None:
            loss = self.loss(h, labels, out.next_token_kept)
        logits = None
        if labels is None or not self.training:
            logits = self.lm_head(h[:, -logits_to_keep:] if logits_to_keep else h)
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=out.cache, hidden_states=out.hidden_states)

    def loss(self, hidden, labels, kept: torch.Tensor | None = None) -> torch.Tensor:
        """Mean next-token cross-entropy: hidden [B, T, D] at t predicts labels [B, T] at t + 1; ``kept``
        [B, T - 1] (False: across a document boundary or in padding) or None (all kept)."""
        if labels.shape != hidden.shape[:2]:
            raise ValueError(f"labels must have shape {list(hidden.shape[:2])} (input_ids), got {list(labels.shape)}")
        target = labels[:, 1:]
        if kept is not None:
            target = target.masked_fill(~kept, IGNORE_INDEX)
        h = hidden[:, :-1].reshape(-1, hidden.shape[-1])
        return linear_cross_entropy(h, self.lm_head.weight, target.reshape(-1), ignore_index=IGNORE_INDEX,
                                    chunk_size=self.config.loss_chunk_size)  # fmt: skip


def register_auto_classes() -> None:
    """Make ``AutoConfig`` / ``AutoModel`` / ``AutoModelForCausalLM`` know model_type "statetrack" (idempotent)."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    try:
        AutoConfig.register(StateTrackConfig.model_type, StateTrackConfig)
    except ValueError:  # already registered (a second import)
        return
    AutoModel.register(StateTrackConfig, StateTrackModel)
    AutoModelForCausalLM.register(StateTrackConfig, StateTrackForCausalLM)
