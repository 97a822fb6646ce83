"""One CUDA graph for a whole model's one-token decoding step.

Decoding a token runs every layer's ``step()``: a few hundred small kernels whose launches, not their work,
bound the speed at LM widths. :class:`DecodeGraphs` records the step once per batch size and replays it: the
token and every layer's state live in static buffers that the replay updates in place (the Triton steps write
them directly, :func:`statetrack.ops.update_states_in_place`; other states are copied back), and the cache handed
back to ``generate()`` holds those buffers, so the next step finds its inputs where the graph reads them (a
cache that was reordered or replaced, e.g. by beam search, is copied in first).

Attention layers' key/value caches grow every token, so models with attention layers decode eagerly.
"""

from __future__ import annotations

import torch

from statetrack.layers import State
from statetrack.ops import update_states_in_place, value_checks


class _Graph:
    """The recorded step of one batch size: static token, states and logits."""

    def __init__(self, step, token: torch.Tensor, states: list[State]):
        self.token = token.clone()
        self.states = [{k: v.clone() for k, v in s.items()} for s in states]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), value_checks(False):  # warm-up: allocators, autotuning, lazy inits
            for _ in range(2):
                step(self.token, [{k: v.clone() for k, v in s.items()} for s in self.states])
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), value_checks(False), update_states_in_place():
            logits, new = step(self.token, self.states)
            for old, fresh in zip(self.states, new, strict=True):
                for k in old:
                    if fresh[k] is not old[k]:  # a step that could not write its state in place
                        old[k].copy_(fresh[k])
        self.logits = logits

    def owns(self, states: list[State]) -> bool:
        return all(s[k] is self.states[i][k] for i, s in enumerate(states) for k in s)

    def __call__(self, token: torch.Tensor, states: list[State]) -> tuple[torch.Tensor, list[State]]:
        self.token.copy_(token)
        if not self.owns(states):
            for mine, theirs in zip(self.states, states, strict=True):
                for k in mine:
                    mine[k].copy_(theirs[k])
        self.graph.replay()
        return self.logits.clone(), self.states


class DecodeGraphs:
    """Replayed decoding steps, one graph per (batch size, dtype). ``step(token [B], states) -> (logits [B, V],
    states)`` is the model's eager one-token step; ``parameters()`` its model's parameters. The graphs must be
    dropped (``clear()``) when weights move to another device or dtype (the graphs read the weights where they
    were recorded); after an in-place change of any weight (its version counter moved: an optimizer step, a
    ``load_state_dict``) they are recorded again, since a step may read weights derived from them (the fused
    projections of ``layers.fused_linear``)."""

    def __init__(self, step, parameters):
        self.step, self.parameters, self.graphs = step, parameters, {}
        self.params: list[torch.Tensor] = []
        self.versions: tuple[int, ...] = ()

    def clear(self) -> None:
        self.graphs = {}

    def __call__(self, token: torch.Tensor, states: list[State]) -> tuple[torch.Tensor, list[State]]:
        if self.graphs and tuple(p._version for p in self.params) != self.versions:
            self.clear()
        if not self.graphs:
            self.params = list(self.parameters())
            self.versions = tuple(p._version for p in self.params)
        key = (token.shape[0], token.device, next(iter(states[0].values())).dtype)
        if key not in self.graphs:
            self.graphs[key] = _Graph(self.step, token, states)
        return self.graphs[key](token, states)
