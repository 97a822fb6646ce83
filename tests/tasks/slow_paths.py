"""Independent slow recomputations of every label, from the decoded tokens only (no generator code reused)."""

from __future__ import annotations

import re


def chomsky_answer(family: str, problem: list[str], params: dict) -> int:
    """The answer of a Chomsky problem (its tokens as strings, without <bos>), by plain Python."""
    if family == "parity":
        return problem.count("1") % 2
    if family == "even-pairs":
        s = "".join(problem)
        return sum(1 for i in range(len(s) - 1) if s[i : i + 2] in ("01", "10")) % 2
    if family == "cycle-nav":
        step = {"left": -1, "stay": 0, "right": 1}
        return sum(step[t] for t in problem) % params["n_states"]
    if family in ("modarith", "modarith-brackets"):
        assert problem[-1] == "="
        expr = " ".join(problem[:-1])
        # Python's own arithmetic: standard precedence, unary minus, brackets; % gives a non-negative residue
        return eval(expr, {"__builtins__": {}}, {}) % params["m"]  # noqa: S307 - digits and + - * ( ) only
    raise AssertionError(family)


def parse_factors(group: str) -> list[tuple[str, int]]:
    return [(k if k != "C" else "Z", int(n)) for k, n in re.findall(r"([SAZCD])(\d+)", group.upper())]


def compose(factors, a, b):
    """a, then b, on elements in JSON form (one-line lists, residues, or lists of components)."""
    if len(factors) > 1:
        return [compose([f], x, y) for f, x, y in zip(factors, a, b, strict=True)]
    kind, n = factors[0]
    if kind == "Z":
        return (a + b) % n
    return [b[a[i]] for i in range(len(a))]  # y(i) = b(a(i))


def identity(factors):
    if len(factors) > 1:
        return [identity([f]) for f in factors]
    kind, n = factors[0]
    return 0 if kind == "Z" else list(range(n))


def moved_points(factors, e) -> int:
    if len(factors) > 1:
        return sum(moved_points([f], x) for f, x in zip(factors, e, strict=True))
    kind, n = factors[0]
    if kind == "Z":
        return 0 if e == 0 else n
    return sum(1 for i, v in enumerate(e) if v != i)
