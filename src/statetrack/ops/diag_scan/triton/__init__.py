"""Triton kernels of the signed diagonal scan and of Mamba-1's selective scan, forward and backward. They run
compiled on CUDA tensors and in Triton's interpreter on CPU tensors (for tests)."""

from ..._triton import interpreter_requested, triton_installed
from .diag import diag_scan_triton
from .selective import selective_scan_triton

__all__ = ["diag_scan_triton", "interpreter_requested", "selective_scan_triton", "triton_installed"]
