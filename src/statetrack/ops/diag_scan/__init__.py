"""Signed diagonal recurrences: h_t = a_t * h_{t-1} + b_t with a_t in [-1, 1], and Mamba-1's selective scan."""

from .api import BACKENDS, diag_scan, diag_scan_step, selective_scan, selective_scan_step

__all__ = ["BACKENDS", "diag_scan", "diag_scan_step", "selective_scan", "selective_scan_step"]
