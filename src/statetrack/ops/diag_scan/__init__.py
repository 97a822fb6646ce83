"""The signed diagonal recurrence h_t = a_t * h_{t-1} + b_t with a_t in [-1, 1] (elementwise).

``naive.py`` (the loop, the oracle), ``scan.py`` (the chunked torch path, also under the selective scan),
``triton/`` (the kernels), ``api.py`` (the public functions, which dispatch).
"""

from .api import diag_scan, diag_scan_step

__all__ = ["diag_scan", "diag_scan_step"]
