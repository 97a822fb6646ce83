"""Triton kernels of the sLSTM recurrence (compiled on CUDA tensors; in Triton's interpreter on CPU tensors)."""

from .scan import slstm_scan_triton

__all__ = ["slstm_scan_triton"]
