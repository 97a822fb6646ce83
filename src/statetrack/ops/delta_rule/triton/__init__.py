"""Triton kernels of the delta rule: chunked forward/backward (training, prefill) and a fused recurrent forward
(decoding). They run compiled on CUDA tensors and in Triton's interpreter on CPU tensors (for tests)."""

from ._loader import interpreter_requested, triton_installed
from .chunk import delta_rule_triton
from .recurrent import delta_rule_recurrent_triton

__all__ = ["delta_rule_recurrent_triton", "delta_rule_triton", "interpreter_requested", "triton_installed"]
