"""Task registry: families (parameterized task classes) and named presets (a family plus parameters)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from .base import Task
from .chomsky import CycleNav, EvenPairs, ModArith, ModArithBrackets, Parity
from .word_problem import WordProblem

FAMILIES: dict[str, type[Task]] = {
    cls.family: cls for cls in (Parity, EvenPairs, CycleNav, ModArith, ModArithBrackets, WordProblem)
}


@dataclass(frozen=True)
class Preset:
    """A registered task: ``family`` with ``params`` overriding the family defaults."""

    name: str
    family: str
    params: dict[str, Any] = field(default_factory=dict)
    theory: str = ""
    source: str = ""


PRESETS: dict[str, Preset] = {}


def register_preset(
    name: str, family: str, params: dict[str, Any] | None = None, *, theory: str = "", source: str = ""
) -> Preset:
    """Register a named task. The parameters are validated now (an invalid preset fails at import)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown task family {family!r}; valid: {sorted(FAMILIES)}")
    name = str(name).strip().lower()  # "S5" and "s5" name the same task
    if name in PRESETS:
        raise ValueError(f"task {name!r} is already registered")
    preset = Preset(name, family, dict(params or {}), theory, source)
    FAMILIES[family](name, **preset.params)
    PRESETS[name] = preset
    return preset


def list_tasks() -> list[str]:
    """Names of the registered tasks, in registry order."""
    return list(PRESETS)


def list_families() -> list[str]:
    return list(FAMILIES)


def get_task(name: str, **overrides) -> Task:
    """The task registered as ``name`` (a preset, or a bare family with its defaults), with parameters
    overridden by keyword, e.g. ``get_task("s5", num_tokens_per_transition=2)``; names are case-insensitive.
    """
    name = str(name).strip().lower()  # "S5" and "s5" name the same task
    if name in PRESETS:
        preset = PRESETS[name]
        params = {**preset.params, **overrides}
        return FAMILIES[preset.family](name, theory=preset.theory, source=preset.source, **params)
    if name in FAMILIES:
        return FAMILIES[name](name, **overrides)
    close = difflib.get_close_matches(name, [*PRESETS, *FAMILIES], n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
    raise ValueError(
        f"unknown task {name!r}{hint}; valid tasks: {', '.join(PRESETS)}; families (parameterized, "
        f"usable as names too): {', '.join(FAMILIES)}"
    )


# ---------------------------------------------------------------------------------------------- presets
# Theory notes follow ../shared/reference/tasks.md (d); [D] marks a derivation, not a paper's theorem.

_G25 = "Grazzi, Siems et al. ICLR 2025"
_S5_PROTOCOL = {"train_lengths": 32, "test_lengths": 500, "test_size": 40000}

# (name, family, params, theory note, source), in listing order
_PRESET_TABLE = [
    ("parity", "parity", {},
        "Z2 counter: needs a negative (or complex) eigenvalue at any depth (Thm 1); one diagonal layer "
        "with a(1) = -1 solves it.",
        f"{_G25} Table 3 (xLSTM / Deletang et al. format)"),
    ("modarith", "modarith", {"m": 5, "mult": True},
        "Regular: a 25-state automaton over Z5 (affine maps x -> ax + b, i.e. AGL(1,5), plus resets by "
        "*0). Needs non-real eigenvalues for the Z5 part (Thm 2) and a reset; one layer needs non-diagonal "
        "transitions (AGL(1,5) is non-abelian) [D].",
        f"{_G25} Table 3, 'Mod. arith. w/o brackets'"),
    ("modarith-brackets", "modarith-brackets", {"m": 5, "mult": False},
        "Context-free, not regular: outside the finite-state theory; a fixed-size state must fail at "
        "large nesting depth (a control).",
        f"{_G25} Table 3, 'Mod. arith. w/ brackets' (generator default mult=False; the column labels of "
        "the two bracket variants are unresolved, see paper.md 5.1.4)"),
    ("modarith-brackets-mult", "modarith-brackets", {"m": 5, "mult": True},
        "Context-free, not regular (as modarith-brackets, with * as well).",
        f"{_G25} Table 5, 4th column ('w/ brackets, mult')"),
    ("cycle-nav", "cycle-nav", {"n_states": 5},
        "Z5 counter: needs a non-real eigenvalue (Thm 2); a complex diagonal layer, DeltaNet [-1,1] with "
        "2 layers (Thm 6), or DeltaProduct n_h = 2 in 1 layer.",
        "Deletang et al. 2023 (DM); train/test lengths as the xLSTM protocol"),
    ("even-pairs", "even-pairs", {},
        "Star-free (first bit == last bit): eigenvalues in [0,1] suffice (Sarrof et al.); a control "
        "where [-1,1] should not hurt.",
        "Deletang et al. 2023 (DM); train/test lengths as the xLSTM protocol"),
    ("s5", "word-problem", {"group": "S5", **_S5_PROTOCOL},
        "Non-solvable (NC1-complete): needs non-diagonal transitions at any depth (Merrill et al.); one "
        "layer needs 4 Householder factors per token (n_h = 4: a 5-cycle moves 5 points) [D].",
        f"{_G25} Sec. 5.2 (Merrill et al. 2024 word problem)"),
    ("s5-swaps", "word-problem", {"group": "S5", "generators": "swaps", **_S5_PROTOCOL},
        "Inputs are the identity and the 10 transpositions, each one reflection: DeltaNet [-1,1] with "
        "one layer implements it exactly (Thm 3); [0,1] cannot reflect.",
        f"{_G25} Sec. 5.2, 'only swaps'"),
    ("s5-3moved", "word-problem", {"group": "S5", "generators": "moved<=3", **_S5_PROTOCOL},
        "Inputs move <= 3 points (identity, transpositions, 3-cycles): products of 2 reflections, so "
        "n_h = 2 in one layer (Thm 3).",
        f"{_G25} Sec. 5.2, 'swaps, 3-permutations'"),
    ("s5-4tokens", "word-problem", {"group": "S5", "num_tokens_per_transition": 4, **_S5_PROTOCOL, "train_lengths": 64},
        "4 tokens per element: 4 reflections, one per token, give any element of S5, so one DeltaNet "
        "[-1,1] layer (n_h = 1) suffices in principle (Thm 3).",
        f"{_G25} Sec. 5.2, '4 tokens per transition' (filler id 120; shifted labels)"),
    ("z60", "word-problem", {"group": "Z60", **_S5_PROTOCOL},
        "Abelian (Z4 x Z3 x Z5): one complex-diagonal layer; real eigenvalues cannot count mod 3 or 5 "
        "at any depth (Thm 2); a rotation is 2 reflections (n_h = 2, or DeltaNet with 2 layers, Thm 6).",
        f"{_G25} App. E.2.2"),
    ("z60-2tokens", "word-problem",
        {"group": "Z60", "num_tokens_per_transition": 2, **_S5_PROTOCOL, "train_lengths": 64},
        "2 tokens per element: a rotation as 2 reflections over 2 tokens, so one DeltaNet [-1,1] layer "
        "suffices in principle (Thm 3).",
        f"{_G25} App. E.2.2 ('2 tokens per transition')"),
    ("a5", "word-problem", {"group": "A5", "train_lengths": 128, "test_lengths": 512, "test_size": 1000},
        "Non-solvable: non-diagonal transitions at any depth; A5 is the rotation group of the "
        "icosahedron, so n_h = 2 in one layer [D].",
        "DeltaProduct (Siems et al. 2025) protocol: train 128, test 512 (~1% of 100k)"),
    ("s3", "word-problem", {"group": "S3", "train_lengths": 128, "test_lengths": 512, "test_size": 1000},
        "Solvable, non-abelian (= D3): n_h = 2 in one layer; [0,1] fails for every n_h (DeltaProduct).",
        "DeltaProduct (Siems et al. 2025) protocol: train 128, test 512 (~1% of 100k)"),
    ("s4", "word-problem", {"group": "S4", "train_lengths": 128, "test_lengths": 512, "test_size": 1000},
        "Solvable (rotations of the cube, SO(3)): n_h = 2 in one layer [D].",
        "DeltaProduct (Siems et al. 2025) protocol: train 128, test 512 (~1% of 100k)"),
    ("a4xz5", "word-problem", {"group": "A4xZ5", **_S5_PROTOCOL},
        "Solvable, non-abelian: one layer with n_h <= 4 via SO(3) x SO(2) [D]; a diagonal cascade of "
        "depth ~ number of composition factors in principle [D].",
        "Merrill et al. 2024 (fixed lengths there); here with the G'25 extrapolation protocol 32 -> 500"),
]  # fmt: skip
for _name, _family, _params, _theory, _source in _PRESET_TABLE:
    register_preset(_name, _family, _params, theory=_theory, source=_source)
