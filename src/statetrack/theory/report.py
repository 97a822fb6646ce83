"""``statetrack theory check``: every construction on the library's tasks and every numerical check, as rows.

Each row: the statement, the construction (or check), the length tested, the result and pass / fail. A
construction passes when it is right at 100% of the positions where the task has a label, and at every
prefix against a plain-Python reference (the running product, sum, or DFA state), at the given length in
float32. The checks pass as described in :mod:`statetrack.theory.checks`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from statetrack.tasks import permutations

from . import checks
from .constructions import CyclicReflections, CyclicRotation, HouseholderParity, PermutationGroupLRNN, ScalarParity
from .on_tasks import MachineOnTask, cyclic_letters, group_letters, score


@dataclass
class Row:
    statement: str
    construction: str
    length: int | None
    result: str
    passed: bool
    seconds: float = 0.0
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _pct(num: int, den: int) -> str:
    return f"{100.0 * num / max(1, den):.2f}% ({num:,}/{den:,})"


def _sample(task, batch: int, length: int, seed: int):
    return task.sample(batch, generator=torch.Generator().manual_seed(seed), lengths=length)


def _chomsky_length(task, length: int) -> int:
    """The nearest valid length >= length and >= the task's minimum (modular arithmetic needs odd lengths)."""
    length = max(length, task.min_length)
    for L in range(length, length + 4):
        if bool(task._length_ok(np.array([L]))[0]):
            return L
    return length


def _timed(make: Callable[..., Row], *args) -> Row:
    """The row ``make(*args)`` returns, with the seconds it took."""
    t0 = time.perf_counter()
    row = make(*args)
    row.seconds = time.perf_counter() - t0
    return row


def _construction_row(
    statement: str,
    construction: str,
    task,
    length: int,
    batch: int,
    seed: int,
    predict: Callable[[torch.Tensor], torch.Tensor],
    reference: Callable[[torch.Tensor], torch.Tensor],
    details: dict,
) -> Row:
    """Run ``predict`` on a task sample; compare its labels with the task's (where masked), and its labels, or
    the states when it returns (labels, states), with the prefix reference at every position."""
    b = _sample(task, batch, length, seed)
    pred = predict(b.input)
    pred, got = pred if isinstance(pred, tuple) else (pred, pred)
    acc = score(pred, b)
    ref = reference(b.input)
    valid = b.input != task.pad_id
    prefix_ok = int(((got == ref) & valid).sum())
    n_valid = int(valid.sum())
    passed = acc.correct == acc.positions and prefix_ok == n_valid and acc.positions > 0
    result = f"labels {_pct(acc.correct, acc.positions)}; every prefix {_pct(prefix_ok, n_valid)}"
    return Row(
        statement,
        construction,
        int(b.input.shape[1]),
        result,
        passed,
        details={
            **details,
            "task": task.name,
            "batch": batch,
            "label_accuracy": acc.accuracy,
            "sequence_accuracy": acc.sequence_accuracy,
            "prefix_accuracy": prefix_ok / max(1, n_valid),
        },
    )


# ---- references (plain Python / numpy, independent of the LRNN) -------------------------------------------


def _cumulative_mod(values: list[int], m: int):
    v = torch.tensor(values, dtype=torch.long)

    def ref(inputs: torch.Tensor) -> torch.Tensor:
        return v[inputs].cumsum(1) % m

    return ref


def _group_reference(task):
    table = torch.tensor(np.array(task.group.table), dtype=torch.long)
    G = task.group.order

    def ref(inputs: torch.Tensor) -> torch.Tensor:
        x = inputs.clone()
        x[x >= G] = 0  # <bos> and <pad> act as the identity (element 0)
        y = torch.zeros_like(x)
        cur = torch.zeros(x.shape[0], dtype=torch.long)
        for t in range(x.shape[1]):
            cur = table[cur, x[:, t]]
            y[:, t] = cur
        return y

    return ref


# ---- rows ---------------------------------------------------------------------------------------------------


def construction_rows(length: int = 10_000, batch: int = 16, seed: int = 0, quick: bool = False) -> Iterable[Row]:
    """Every construction on the library's tasks (``quick``: a subset, for tests)."""
    from statetrack.tasks import get_task

    # parity (Chomsky format: one answer at the end; every prefix checked against the running parity)
    task = get_task("parity")
    L = _chomsky_length(task, length)
    ref = _cumulative_mod([0, 1] + [0] * (task.vocab_size - 2), 2)
    to_bits = torch.tensor([0, 1] + [0] * (task.vocab_size - 2))
    for cls, statement, what in (
        (ScalarParity, "Sec. 4.1 / Thm 1: parity with a(1) = -1", "parity: scalar h = a h + b (diag_scan)"),
        (HouseholderParity, "Thm 3: parity, A(1) = -1", "parity: DeltaNet, K = 1, beta = 2"),
    ):
        c = cls()
        predict = lambda x, c=c: c(to_bits[x])  # noqa: E731
        yield _timed(
            _construction_row, statement, what, task, L, batch, seed, predict, ref, {"layers": 1, "state_dim": 1}
        )

    # Z_m: cycle navigation (Z_5) and the Z_60 word problem
    for name in ["cycle-nav"] + ([] if quick else ["z60"]):
        task = get_task(name)
        m, vals = cyclic_letters(task)
        letters = torch.tensor(vals)
        L = _chomsky_length(task, length) if name == "cycle-nav" else length
        for cls, statement, what in (
            (CyclicRotation, "Thm 3: Z_m by rotations", f"Z_{m}: 1 layer, R = H H, n_h = 2"),
            (CyclicReflections, "Thm 6: Z_m, 2 reflection layers", f"Z_{m}: 2 DeltaNet layers, n_h = 1"),
        ):
            c = cls(m)
            predict = lambda x, c=c, letters=letters: c(letters[x])  # noqa: E731
            yield _timed(
                _construction_row,
                statement,
                f"{what} ({name})",
                task,
                L,
                batch,
                seed,
                predict,
                _cumulative_mod(vals, m),
                c.describe(),
            )

    # permutation groups, one layer of swap reflections
    names = ["s5-swaps", "s5"] if quick else ["s5-swaps", "s5-3moved", "s5", "a5", "s3", "a4xz5"]
    for name in names:
        task = get_task(name)
        letter_perms, elements = group_letters(task)
        used = sorted(set(task.input_ids))
        # the construction's letters: the task's input elements, then the identity for <bos> and <pad>
        lookup = torch.full((task.vocab_size,), len(used), dtype=torch.long)
        lookup[used] = torch.arange(len(used))
        c = PermutationGroupLRNN(
            [letter_perms[i] for i in used] + [tuple(range(len(elements[0])))], elements, name=name
        )
        moved = max(permutations.moved_points(letter_perms[i]) for i in used)
        what = (
            f"{task.group.name} ({name}): 1 layer on {c.n} points, n_h = {c.householders_per_token}"
            f" (letters move <= {moved} points)"
        )
        yield _timed(
            _construction_row,
            "Thm 3: group automaton, swap reflections",
            what,
            task,
            length,
            batch,
            seed,
            lambda x, c=c, lookup=lookup: c(lookup[x]),
            _group_reference(task),
            c.describe(),
        )

    # any regular language: Krohn-Rhodes cascades of the regular Chomsky tasks
    def cascade_row(task) -> Row:  # timed with the decomposition
        machine = MachineOnTask(task)
        d = machine.lrnn.describe()
        dfa = machine.cascade.dfa

        def ref(x):
            return torch.tensor([dfa.run(r) for r in x.tolist()], dtype=torch.long)

        what = (
            f"{task.name}: {dfa.n_states}-state machine -> depth {d['depth']}, width {d['width']} "
            f"(level states {d['level_states']})"
        )
        return _construction_row(
            "Thm 4: regular language, Krohn-Rhodes cascade",
            what,
            task,
            _chomsky_length(task, length),
            batch,
            seed,
            machine.labels_and_states,
            ref,
            d,
        )

    for name in ["even-pairs"] + ([] if quick else ["modarith"]):
        yield _timed(cascade_row, get_task(name))


def _orbit_summary(results, allowed: set[int]) -> tuple[str, bool, dict]:
    decided = sum(r.decided for r in results)
    total = sum(len(r.periods) for r in results)
    periods = Counter(p for r in results for p in r.periods if p)
    bad = sum(n for p, n in periods.items() if p not in allowed)
    ok = bad == 0 and decided >= 0.9 * total
    text = f"{decided}/{total} orbits closed, periods {dict(sorted(periods.items()))}" + (
        f"; {total - decided} undecided within the horizon" if decided < total else ""
    )
    return text, ok, {"periods": dict(periods), "decided": decided, "total": total}


def _horizons(results) -> str:
    h = {r.dtype: r.horizon for r in results}
    return ", ".join(f"{dtype} {n:,} steps" for dtype, n in h.items())


def check_rows(quick: bool = False, seed: int = 0) -> Iterable[Row]:
    """Theorems 1 and 2 (finite-precision orbits on 1^k) and Proposition 1."""
    dtypes = (torch.bfloat16, torch.float16) if quick else (torch.bfloat16, torch.float16, torch.float32)
    horizons = {torch.bfloat16: 600, torch.float16: 600, torch.float32: 600} if quick else None
    models = 8 if quick else 32
    samples = 50 if quick else 400
    dtype_names = "/".join(checks.dtype_name(d) for d in dtypes)

    def orbits(kind: str, statement: str, allowed: set[int], must: str) -> Row:
        res = checks.eventual_periods(kind, dtypes=dtypes, models=models, horizons=horizons, seed=seed)
        text, ok, det = _orbit_summary(res, allowed)
        fams = sorted({r.family for r in res})
        what = f"{models} random layers each: {'; '.join(fams)} ({_horizons(res)})"
        return Row(statement, what, max(r.horizon for r in res), f"{text} ({must})", ok, details=det)

    def parity() -> Row:
        res = checks.parity_orbit(dtypes=dtypes, horizon=200)
        return Row(
            "Thm 1: with a(1) = -1 the state alternates forever",
            f"the two parity constructions on 1^k ({dtype_names})",
            200,
            f"periods {sorted({p for r in res for p in r.periods})}: alternate forever",
            all(r.periods == [2] for r in res),
            details={"periods": [r.periods[0] for r in res]},
        )

    def mod3() -> Row:
        res = checks.rotation_orbit(3, dtypes=dtypes, horizon=1000)
        return Row(
            "Thm 2: counting mod 3 needs a non-real eigenvalue",
            f"Z_3 rotation layer on 1^k ({dtype_names})",
            1000,
            f"state periods {[r.periods[0] for r in res]}, decoded label period 3",
            all(r.periods[0] > 0 and r.periods[0] % 3 == 0 and r.extra["decoded_period"] == 3 for r in res),
            details={"periods": [r.periods[0] for r in res]},
        )

    def prop(check, offset: int, statement: str, what: str, result: Callable[[dict], str]) -> Row:
        r = check(samples=samples, seed=seed + offset)
        return Row(statement, what, None, result(r), r["passed"], details=r)

    yield _timed(
        orbits, "nonneg", "Thm 1: eigenvalues in [0, 1] -> state eventually constant on 1^k", {1}, "all must be 1"
    )
    yield _timed(parity)
    yield _timed(
        orbits,
        "real",
        "Thm 2: real eigenvalues -> state eventually 2-periodic on 1^k (no mod-3 count)",
        {1, 2},
        "all must divide 2",
    )
    yield _timed(mod3)
    yield _timed(
        prop,
        checks.prop1_norm,
        0,
        "Prop 1.1: GH products with beta in [0, 2] have norm <= 1",
        "random products of 1..2n factors, n = 2..8 (fp64, delta_rule)",
        lambda r: f"max norm {r['max_norm']:.15f} over {r['products']:,} products (tolerance 1e-9)",
    )
    yield _timed(
        prop,
        checks.prop1_nonneg,
        1,
        "Prop 1.3: beta in [0, 1], <= 2 factors -> eigenvalues real, in [0, 1]",
        "random products of 1 and 2 factors (fp64)",
        lambda r: f"max abs(Im) {r['max_imag']:.1e}, min Re {r['min_real']:.1e} over {r['products']:,}; "
        f"(3 factors, not covered: max abs(Im) {r['three_factor_max_imag']:.3f})",
    )
    yield _timed(
        prop,
        checks.prop1_open_range,
        2,
        "Prop 1.3: beta in (0, 2) -> every eigenvalue is 1 or has modulus < 1",
        "random products, beta in [0.01, 1.99] (fp64)",
        lambda r: f"N = I off the keys' span (error {r['identity_error_off_span']:.0e}), spectral radius "
        f"on it 1 - {1 - r['radius_on_span']:.1e}, over {r['products']:,} "
        f"(beta = 2: {r['beta2_max_abs_not_one']:.6f})",
    )


def run_all(length: int = 10_000, batch: int = 16, seed: int = 0, quick: bool = False) -> list[Row]:
    return [*construction_rows(length, batch, seed, quick), *check_rows(quick, seed)]


def format_table(rows: list[Row]) -> str:
    """A markdown table: statement | construction | length | result | pass."""
    head = ["statement", "construction", "length", "result", "pass"]
    body = [
        [
            r.statement,
            r.construction,
            "-" if r.length is None else f"{r.length:,}",
            r.result,
            "pass" if r.passed else "FAIL",
        ]
        for r in rows
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in body]
    return "\n".join(lines)
