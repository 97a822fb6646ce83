"""Triton kernels of the delta rule: chunked forward/backward (long sequences) and fused recurrent forward/backward
(short sequences, decoding). They run compiled on CUDA tensors, and in Triton's interpreter on CPU tensors
(for tests)."""

from .chunk import PRECISIONS, auto_precision, default_chunk_tokens, delta_rule_triton
from .chunk import TUNING as CHUNK_TUNING
from .recurrent import TUNING as RECURRENT_TUNING
from .recurrent import delta_rule_recurrent_triton, prefers_recurrent

__all__ = [
    "CHUNK_TUNING",
    "PRECISIONS",
    "RECURRENT_TUNING",
    "auto_precision",
    "default_chunk_tokens",
    "delta_rule_recurrent_triton",
    "delta_rule_triton",
    "prefers_recurrent",
]
