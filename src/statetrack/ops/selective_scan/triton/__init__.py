"""Triton kernels of Mamba-1's selective scan, forward and backward, in two algorithms ("tiles", "steps"). They run
compiled on CUDA tensors and in Triton's interpreter on CPU tensors (for tests)."""

from .config import ALGORITHMS, STEPS_KEYS, TILES_KEYS, auto_algorithm, fit_checkpoint, pick_algorithm, selective_config
from .scan import selective_scan_triton

__all__ = [
    "ALGORITHMS",
    "STEPS_KEYS",
    "TILES_KEYS",
    "auto_algorithm",
    "fit_checkpoint",
    "pick_algorithm",
    "selective_config",
    "selective_scan_triton",
]
