"""The floating-point operations of one training token of a causal LM, by the algorithm that actually runs, and
the model FLOPs utilisation (MFU) they give against a device's peak.

A linear RNN is not "6 N": its matmuls are, but its recurrence is not a weight. Per token, forward (a
multiply-add is 2 FLOPs; the backward pass costs twice the forward, so training = 3 x forward):

- matmuls: 2 x (the weights of every ``nn.Linear``, the LM head included; not the embedding, a lookup);
- the chunked delta rule (DeltaNet, Gated DeltaNet; DeltaProduct runs n_h such steps per token), per head at
  chunk C (in the op's tokens, 64 as on the GPU): ``2C(3K + 2V) + 6KV + 2C^2/3``: within a chunk q k^T, k k^T and
  the W, U products (2C(3K + 2V)), the triangular solve of the WY form (2C^2/3), and across chunks the
  state's read-out, correction and update (6KV);
- Mamba's selective scan, per channel and state: 9 E N (the discretisation, the update and the read-out), plus
  2 E for the skip D and the output gate;
- attention: 4 T D (q k^T and the weighted sum over the T positions of a row; the causal half is not taken off,
  as is the convention, PaLM's).

Short convolutions, norms and activations are left out (each well under 1% of these at LM widths). Mixers
without a formula here raise ValueError: an MFU without one would be a silent wrong answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

DELTA_CHUNK = 64  # the chunked delta rule's chunk on the GPU, in the op's tokens (n_h per model token)

# dense bf16 tensor-core peak FLOP/s of one device, matched against torch.cuda.get_device_name() (first match wins)
PEAK_BF16 = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A10", 125e12),
)


@dataclass(frozen=True)
class TokenFlops:
    """FLOPs of one token's forward pass, by part; ``training`` = 3 x ``forward`` (backward = 2 x forward)."""

    matmul: float
    recurrence: float
    attention: float

    @property
    def forward(self) -> float:
        return self.matmul + self.recurrence + self.attention

    @property
    def training(self) -> float:
        return 3.0 * self.forward


def delta_rule_flops(K: int, V: int, chunk: int = DELTA_CHUNK) -> float:
    """Forward FLOPs per token and head of the chunked delta rule at chunk ``chunk``: 2C(3K + 2V) + 6KV + 2C^2/3."""
    C = chunk
    return 2 * C * (3 * K + 2 * V) + 6 * K * V + 2 * C * C / 3


def selective_scan_flops(E: int, N: int) -> float:
    """Forward FLOPs per token of Mamba's selective scan over E channels of N states: 9 E N + 2 E."""
    return 9 * E * N + 2 * E


def _mixer_flops(mixer: nn.Module, seq_len: int, d_model: int) -> tuple[float, float]:
    """(recurrence, attention) forward FLOPs per token of one mixer module."""
    name = getattr(mixer, "mixer_name", type(mixer).__name__)
    if name in ("deltanet", "gated_deltanet", "deltaproduct"):
        return mixer.n_h * mixer.n_heads * delta_rule_flops(mixer.head_dim, mixer.head_v_dim), 0.0
    if name == "mamba":
        return selective_scan_flops(mixer.d_inner, mixer.d_state), 0.0
    if name == "transformer":
        return 0.0, 4.0 * seq_len * d_model
    raise ValueError(f"flops: no FLOPs formula for mixer {name!r} (known: deltanet family, mamba, transformer)")


def flops_per_token(config, seq_len: int) -> TokenFlops:
    """The FLOPs of one token of a StateTrackForCausalLM of ``config`` (a StateTrackConfig) trained at sequence
    length ``seq_len`` (what attention's cost grows with). The model is built on the meta device: no memory."""
    from statetrack.models import StateTrackForCausalLM

    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    with torch.device("meta"):
        model = StateTrackForCausalLM(config)
    seen, matmul = set(), 0.0
    for m in model.modules():
        if isinstance(m, nn.Linear) and id(m.weight) not in seen:
            seen.add(id(m.weight))
            matmul += 2.0 * m.weight.numel()
    rec = att = 0.0
    for block in model.model.layers:
        r, a = _mixer_flops(block.mixer, seq_len, config.hidden_size)
        rec, att = rec + r, att + a
    return TokenFlops(matmul=matmul, recurrence=rec, attention=att)


def peak_flops(device: torch.device | str) -> float | None:
    """The dense bf16 peak FLOP/s of ``device`` from :data:`PEAK_BF16`; None on the CPU or an unlisted GPU."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for key, v in PEAK_BF16 if key in name), None)


def mfu(tokens_per_s: float, flops_per_token_training: float, peak: float | None, devices: int = 1) -> float | None:
    """Model FLOPs utilisation: achieved training FLOP/s over ``devices`` x ``peak`` (None without a peak)."""
    if peak is None or peak <= 0:
        return None
    return tokens_per_s * flops_per_token_training / (peak * devices)
