"""The delta rule family: DeltaNet (n_h = 1), DeltaProduct (n_h > 1), with an optional scalar gate (Gated DeltaNet)."""

from .api import BACKENDS, delta_rule, delta_rule_step

__all__ = ["BACKENDS", "delta_rule", "delta_rule_step"]
