"""Mamba-1's selective scan with signed decays: a = min_eigenvalue + (1 - min_eigenvalue) exp(delta A) in
[min_eigenvalue, 1], h_t = a_t * h_{t-1} + (delta_t u_t) B_t, y_t = C_t . h_t + D u_t (* silu(z_t)).

``naive.py`` (the loop, the oracle), ``chunk.py`` (the chunked torch path, on ``diag_scan``'s scan), ``triton/``
(the kernels, algorithms "tiles" and "steps"), ``api.py`` (the public functions, which dispatch).
"""

from .api import selective_scan, selective_scan_step
from .naive import selective_transition
from .triton import ALGORITHMS

__all__ = ["ALGORITHMS", "selective_scan", "selective_scan_step", "selective_transition"]
