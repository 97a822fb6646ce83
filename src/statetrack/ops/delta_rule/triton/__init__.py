"""Triton kernels of the delta rule: chunked forward/backward (long sequences) and fused recurrent forward/backward
(short sequences, decoding). They run compiled on CUDA tensors, and in Triton's interpreter on CPU tensors
(for tests)."""

from ..._triton import interpreter_requested, triton_installed
from .chunk import check_precision, delta_rule_triton
from .recurrent import delta_rule_recurrent_triton, prefers_recurrent

__all__ = [
    "check_precision",
    "delta_rule_recurrent_triton",
    "delta_rule_triton",
    "interpreter_requested",
    "prefers_recurrent",
    "triton_installed",
]
