"""The delta rule family: DeltaNet (n_h = 1), DeltaProduct (n_h > 1), with an optional scalar gate (Gated DeltaNet).

``delta_rule`` runs whole sequences on one of BACKENDS with one of ALGORITHMS (``paths.py`` says which backend
has which, and what "auto" picks); ``delta_rule_step`` decodes one token. The tuning arguments' values:
PRECISIONS, and the ``triton_config`` keys CHUNK_TUNING / RECURRENT_TUNING.
"""

from .api import delta_rule, delta_rule_step
from .chunk import default_chunk_size
from .paths import ALGORITHMS, BACKENDS
from .triton import CHUNK_TUNING, PRECISIONS, RECURRENT_TUNING, prefers_recurrent

__all__ = [
    "ALGORITHMS",
    "BACKENDS",
    "CHUNK_TUNING",
    "PRECISIONS",
    "RECURRENT_TUNING",
    "default_chunk_size",
    "delta_rule",
    "delta_rule_step",
    "prefers_recurrent",
]
