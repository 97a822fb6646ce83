"""ModelConfig: every knob of a token-classification model in one dataclass, checked when it is built."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from statetrack.layers import MIXERS, check_heads, check_min_eigenvalue

# mixers whose width is split into heads (the others ignore n_heads)
HEADED = ("deltanet", "gated_deltanet", "deltaproduct", "transformer", "slstm", "mlstm")


@dataclass
class ModelConfig:
    """A backbone of ``n_layers`` pre-norm blocks x + mixer(norm(x)), x + mlp(norm(x)) between an embedding and
    a token-classification head.

    Attributes:
        mixer: one of statetrack.layers.MIXERS ("deltanet", "gated_deltanet", "deltaproduct", "mamba",
            "diagonal_rnn", "full_matrix_rnn", "transformer", "lstm", "slstm", "mlstm").
        vocab_size: embedding rows and head outputs (the task's vocab_size); 0 = take it from the task.
        d_model, n_layers, n_heads: width, depth, heads (heads must divide d_model for headed mixers).
        min_eigenvalue: in [-1, 0]; used by deltanet, gated_deltanet, deltaproduct, mamba, diagonal_rnn.
        mlp_ratio: SwiGLU hidden = round8(2/3 * mlp_ratio * d_model); 0 = blocks without MLP.
        norm_eps: RMSNorm epsilon.
        use_short_conv, conv_size: short causal conv (DeltaNet family, mLSTM; Mamba always has one).
        num_householder: n_h for deltaproduct. use_output_gate: gated output norm in the DeltaNet family
            (gated_deltanet: always on).
        d_state: Mamba's N, or the DiagonalRNN's state size (0 = d_model). expand, dt_rank: Mamba (0 = auto).
        gate_scale: DiagonalRNN gate temperature. full_matrix_n: FullMatrixRNN's n.
        backend: op backend for the DeltaNet family and Mamba ("auto", "naive", "torch", "triton").
        tie_embeddings: share the embedding and head weights.
    """

    mixer: str = "deltanet"
    vocab_size: int = 0
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    min_eigenvalue: float = -1.0
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6
    use_short_conv: bool = True
    conv_size: int = 4
    num_householder: int = 2
    use_output_gate: bool = False
    d_state: int = 16
    expand: int = 2
    dt_rank: int = 0
    gate_scale: float = 10.0
    full_matrix_n: int = 32
    backend: str = "auto"
    tie_embeddings: bool = False

    def validate(self, require_vocab: bool = True) -> ModelConfig:
        """Raise ValueError/TypeError naming the bad field; return self. ``require_vocab=False`` accepts
        vocab_size = 0 (to be set from the task)."""
        if self.mixer not in MIXERS:
            raise ValueError(f"model.mixer: unknown mixer {self.mixer!r}; choose one of {sorted(MIXERS)}")
        for name in ("d_model", "n_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.vocab_size < (1 if require_vocab else 0):
            raise ValueError(f"model.vocab_size must be >= 1 (set it, or let the task set it), got {self.vocab_size}")
        if self.mixer in HEADED:
            try:
                check_heads(self.d_model, self.n_heads)
            except ValueError as e:
                raise ValueError(f"model: {e}") from None
        try:
            check_min_eigenvalue(self.min_eigenvalue)
        except (TypeError, ValueError) as e:
            raise type(e)(f"model.{e}") from None
        if self.mlp_ratio < 0:
            raise ValueError(f"model.mlp_ratio must be >= 0, got {self.mlp_ratio}")
        if self.mixer == "deltaproduct" and self.num_householder < 1:
            raise ValueError(f"model.num_householder must be >= 1, got {self.num_householder}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"model: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**d)
