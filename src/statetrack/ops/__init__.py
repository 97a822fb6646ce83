"""Pure tensor functions for the recurrences of negative-eigenvalue linear RNNs (no nn.Module here).

- :func:`delta_rule` / :func:`delta_rule_step`: S <- g (prod_j (I - beta k k^T)) S + writes; o = scale S^T q.
- :func:`diag_scan` / :func:`diag_scan_step`: h_t = a_t * h_{t-1} + b_t with signed a_t in [-1, 1].
- :func:`selective_scan` / :func:`selective_scan_step`: Mamba-1's scan with decays
  :func:`selective_transition` = min_eigenvalue + (1 - min_eigenvalue) exp(delta A).
- :func:`linear_cross_entropy`: LM head + cross-entropy in chunks (never the fp32 logits of the whole batch).
- :func:`slstm_scan`: the sLSTM recurrence (a nonlinear baseline; fused into one kernel each way on CUDA).
- :func:`short_conv`, :func:`l2_normalize`, :func:`rms_norm_gated`: the layers' short causal conv + SiLU, q/k L2
  norm and (gated) output RMSNorm, each one fused Triton kernel each way on CUDA (torch reference elsewhere);
  :func:`swiglu`: the MLP's silu(gate) * up (liger-kernel's fused kernel on CUDA).

Shared rules: :func:`check_min_eigenvalue` (the one parameter of every layer), :func:`state_dtype` (fp32 states,
fp64 for fp64 inputs), :func:`value_checks` / :func:`set_value_checks` (the range checks that read values),
:func:`update_states_in_place` (decoding steps that overwrite their state, for CUDA graphs), and
``statetrack.ops.backends`` (which backends run where, and what "auto" tries), :class:`Varlen` (packed <->
padded batches of ``cu_seqlens``).
"""

from ._checks import check_min_eigenvalue, set_value_checks, state_dtype, value_checks
from ._varlen import Varlen
from .cross_entropy import linear_cross_entropy
from .delta_rule import delta_rule, delta_rule_step
from .diag_scan import diag_scan, diag_scan_step
from .fused_norms import l2_normalize, rms_norm_gated
from .selective_scan import selective_scan, selective_scan_step, selective_transition
from .short_conv import position_in_document, short_conv
from .slstm import slstm_scan
from .state_updates import update_states_in_place
from .swiglu import swiglu

__all__ = [
    "Varlen",
    "check_min_eigenvalue",
    "delta_rule",
    "delta_rule_step",
    "diag_scan",
    "diag_scan_step",
    "l2_normalize",
    "linear_cross_entropy",
    "position_in_document",
    "rms_norm_gated",
    "selective_scan",
    "selective_scan_step",
    "selective_transition",
    "set_value_checks",
    "short_conv",
    "slstm_scan",
    "state_dtype",
    "swiglu",
    "update_states_in_place",
    "value_checks",
]
