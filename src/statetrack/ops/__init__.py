"""Pure tensor functions for the recurrences of negative-eigenvalue linear RNNs (no nn.Module here).

- :func:`delta_rule` / :func:`delta_rule_step`: S <- g (prod_j (I - beta k k^T)) S + writes; o = scale S^T q.
- :func:`diag_scan`: h_t = a_t * h_{t-1} + b_t with signed a_t in [-1, 1].
- :func:`selective_scan`: Mamba-1's scan with a = min_eigenvalue + (1 - min_eigenvalue) exp(delta A).
- :func:`slstm_scan`: the sLSTM recurrence (a nonlinear baseline; fused into one kernel each way on CUDA).
"""

from ._checks import set_value_checks, value_checks
from .delta_rule import delta_rule, delta_rule_step
from .diag_scan import diag_scan, diag_scan_step, selective_scan, selective_scan_step
from .slstm import slstm_scan

__all__ = [
    "delta_rule",
    "delta_rule_step",
    "diag_scan",
    "diag_scan_step",
    "selective_scan",
    "selective_scan_step",
    "set_value_checks",
    "slstm_scan",
    "value_checks",
]
