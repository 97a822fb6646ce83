"""Triton kernels of the signed diagonal scan, forward and backward. They run compiled on CUDA tensors and in
Triton's interpreter on CPU tensors (for tests)."""

from .diag import DIAG_KEYS, diag_scan_triton

__all__ = ["DIAG_KEYS", "diag_scan_triton"]
