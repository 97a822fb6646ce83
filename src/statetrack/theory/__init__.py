"""The paper's theory as executable, exact constructions (Section 3 of Grazzi, Siems et al., ICLR 2025).

Constructions (hand-set LRNNs on :func:`statetrack.ops.delta_rule` / :func:`statetrack.ops.diag_scan`):

- :class:`ScalarParity`, :class:`HouseholderParity`: parity with a(1) = -1 (Sec. 4.1, Thm 1 / Thm 3).
- :class:`CyclicRotation`: Z_m in one layer of rotations, each two reflections (Thm 3).
- :class:`CyclicReflections`: Z_m in two layers of single reflections (Thm 6, App. D).
- :class:`PermutationGroupLRNN`: any permutation group automaton in one layer of swap reflections (Thm 3).
- :func:`krohn_rhodes` + :class:`CascadeLRNN`: any DFA as a cascade of permutation-reset automata, one
  layer per level (Thm 4).

Checks (:mod:`statetrack.theory.checks`): Theorems 1 and 2 in finite precision, Proposition 1.
:func:`statetrack.theory.report.run_all` runs everything (``statetrack theory check``).
"""

from . import checks
from .constructions import (
    Construction,
    CyclicReflections,
    CyclicRotation,
    HouseholderParity,
    PermutationGroupLRNN,
    ScalarParity,
)
from .dfa import DFA, DFAError
from .krohn_rhodes import Cascade, CascadeLRNN, krohn_rhodes

__all__ = [
    "DFA",
    "Cascade",
    "CascadeLRNN",
    "Construction",
    "CyclicReflections",
    "CyclicRotation",
    "DFAError",
    "HouseholderParity",
    "PermutationGroupLRNN",
    "ScalarParity",
    "checks",
    "krohn_rhodes",
]
