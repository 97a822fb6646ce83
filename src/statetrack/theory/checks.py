"""Numerical illustrations of the negative results (Theorems 1 and 2) and of Proposition 1.

What these checks can show, and what they cannot:

* Theorems 1 and 2 are about finite precision. We run random layers on the constant input 1, 1, 1, ... with
  the state rounded to the dtype (bf16, fp16; fp32 is the library's own state dtype) after every token. With a
  constant input the layer is a deterministic map f on a finite set of states, so its orbit is eventually
  periodic whatever the eigenvalues; the theorems say *which* periods occur. When we find S_N = S_{N-p}, the
  state is periodic with period p from step N - p on, *forever* (f is a fixed function): that part is an
  exact certificate for the model and dtype at hand, not an extrapolation. What it cannot show is the
  universal statement (every model, every precision): we sample models. A model whose orbit has not closed
  within the horizon is reported as undecided, not as a counterexample.
  Our rounding is per step (the op computes a step in fp32, then we round the state); the paper's model
  computes each product exactly and then rounds. Both are finite-precision LRNNs; a period > 2 found here for
  a real-eigenvalue model would contradict only the per-step variant.
* Proposition 1 is exact linear algebra. We form products of generalized Householder matrices with the
  library's delta rule (initial state I, no writes: the final state is the product) in fp64 and test norms and
  eigenvalues on random samples, with tolerances (1e-9). Floating-point eigenvalues carry errors of about
  1e-12 here, so "exactly 1" versus "modulus just below 1" is decided with a tolerance: the check shows that no
  sampled eigenvalue lies on the unit circle away from 1, not that none could.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from statetrack.ops import delta_rule, delta_rule_step, diag_scan, value_checks

_BITS = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32}


@dataclass
class OrbitResult:
    """Eventual behaviour of R models' states on 1^k: per model the smallest period p <= max_period with
    S_N = S_{N-p} (0 if none, i.e. undecided), and the step from which it is periodic."""

    family: str
    dtype: str
    horizon: int
    periods: list[int]
    transients: list[int]
    extra: dict = field(default_factory=dict)

    @property
    def decided(self) -> int:
        return sum(p > 0 for p in self.periods)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Each step is computed in a wider dtype and then rounded to ``dtype``: the paper's "products computed
    exactly, then cast", up to the (much smaller) rounding of the wider dtype."""
    return torch.float64 if dtype == torch.float32 else torch.float32


def _orbit(step, state: torch.Tensor, horizon: int, dtype: torch.dtype, cdt: torch.dtype | None = None):
    """Iterate ``state <- round_dtype(step(state))`` ``horizon`` times; ``step`` works in the compute dtype.

    Returns (periods, transients), per model, from the bit patterns of the rounded states [R, ...]: the orbit
    enters a cycle of length p at step t0 (first t with S_t = S_{t0}, t > t0); p = 0, t0 = -1 when no state
    repeats within the horizon (undecided)."""
    R = state.shape[0]
    bits, cdt = _BITS[dtype], cdt or _compute_dtype(dtype)
    state = state.to(dtype)
    hist = [state.view(bits).reshape(R, -1)]
    state = step(state.to(cdt)).to(dtype)  # with the value checks on, once
    hist.append(state.view(bits).reshape(R, -1))
    with value_checks(False):
        for _ in range(horizon - 1):
            state = step(state.to(cdt)).to(dtype)
            hist.append(state.view(bits).reshape(R, -1))
    h = torch.stack(hist)  # [N + 1, R, D]
    periods, transients = [], []
    for r in range(R):
        # the first repeated state closes the orbit: from then on it cycles forever with that period
        first: dict[bytes, int] = {}
        p = t0 = 0
        for t, row in enumerate(h[:, r].numpy()):
            key = row.tobytes()
            if key in first:
                t0, p = first[key], t - first[key]
                break
            first[key] = t
        periods.append(p)
        transients.append(t0 if p else -1)
    return periods, transients


def _on_grid(x: torch.Tensor, dtype: torch.dtype, cdt: torch.dtype | None = None) -> torch.Tensor:
    """Parameters of a ``dtype`` model: values of that dtype, held in the compute dtype."""
    return x.to(dtype).to(cdt or _compute_dtype(dtype))


_DELTA_FAMILIES = {
    # name: (Householders per token, beta range, gated); kind "nonneg": eigenvalues in [0, 1] (Thm 1),
    # kind "real": real eigenvalues in [-1, 1] (Thm 2; products of 2 factors are left out: they can rotate)
    "nonneg": [
        ("DeltaNet, beta in [0, 1]", 1, (0.0, 1.0), False),
        ("Gated DeltaNet, beta in [0, 1]", 1, (0.0, 1.0), True),
        ("DeltaProduct n_h = 2, beta in [0, 1]", 2, (0.0, 1.0), False),
    ],
    "real": [
        ("DeltaNet, beta in [0, 2]", 1, (0.0, 2.0), False),
        ("Gated DeltaNet, beta in [0, 2]", 1, (0.0, 2.0), True),
    ],
}
_DIAG_FAMILIES = {
    "nonneg": ("diagonal (Mamba), a in [0, 1]", (0.0, 1.0)),
    "real": ("diagonal, a in [-1, 1]", (-1.0, 1.0)),
}


def _delta_batch(kind: str, R: int, K: int, g: torch.Generator, dtype: torch.dtype, cdt: torch.dtype):
    """R random (Gated) DeltaNet / DeltaProduct layers per family of ``kind``, frozen at the input x = 1, in
    one batch (n_h = 2 throughout; one-factor families get beta = 0 in the second, ungated ones log g = 0).

    Unit keys, beta uniform in the range with 1/8 of the models exactly at its top (eigenvalue 1 - beta_max),
    random writes, gates in (0.5, 1], random initial state. Returns (names, step, initial state [F R, 1, K, K])."""
    fams = _DELTA_FAMILIES[kind]
    ks, vs, bs, gs, names = [], [], [], [], []
    for name, n_h, (lo, hi), gated in fams:
        k = torch.nn.functional.normalize(torch.randn(R, 2, 1, K, generator=g, dtype=torch.float64), dim=-1)
        beta = lo + (hi - lo) * torch.rand(R, 2, 1, generator=g, dtype=torch.float64)
        beta[: max(1, R // 8), 0] = hi
        if n_h == 1:
            beta[:, 1] = 0.0
        v = torch.randn(R, 2, 1, K, generator=g, dtype=torch.float64)
        ld = torch.log(0.5 + 0.5 * torch.rand(R, 1, generator=g, dtype=torch.float64))
        ks.append(k)
        vs.append(v)
        bs.append(beta)
        gs.append(ld if gated else torch.zeros_like(ld))
        names += [name] * R
    k, v, beta, log_decay = (_on_grid(torch.cat(x), dtype, cdt) for x in (ks, vs, bs, gs))
    # re-normalise after rounding (as a layer normalises its keys): otherwise beta = 2 with a bf16-rounded key
    # gives an eigenvalue slightly below -1 and a state that grows until it overflows
    k = torch.nn.functional.normalize(k, dim=-1)
    q = torch.zeros(k.shape[0], 1, K, dtype=k.dtype)
    s0 = torch.randn(k.shape[0], 1, K, K, generator=g)

    def step(s):
        return delta_rule_step(q, k, v, beta, s, log_decay=log_decay)[1]

    return names, step, s0


def _diag_batch(kind: str, R: int, K: int, g: torch.Generator, dtype: torch.dtype, cdt: torch.dtype):
    """R random diagonal (Mamba-style) layers frozen at x = 1: a uniform in the range (1/8 of the models with
    one entry exactly at its bottom), random b and initial state."""
    name, (lo, hi) = _DIAG_FAMILIES[kind]
    a = lo + (hi - lo) * torch.rand(R, 1, K, generator=g, dtype=torch.float64)
    a[: max(1, R // 8), 0, 0] = lo
    b = torch.randn(R, 1, K, generator=g, dtype=torch.float64)
    a, b = _on_grid(a, dtype, cdt), _on_grid(b, dtype, cdt)
    s0 = torch.randn(R, K, generator=g)

    def step(s):
        return diag_scan(a, b, initial_state=s, output_final_state=True)[1]

    return [name] * R, step, s0


DEFAULT_HORIZONS = {torch.bfloat16: 2500, torch.float16: 6000, torch.float32: 10000}


def eventual_periods(
    kind: str,
    *,
    dtypes=(torch.bfloat16, torch.float16, torch.float32),
    models: int = 32,
    dim: int = 4,
    horizons: dict | None = None,
    seed: int = 0,
    wide: bool = True,
) -> list[OrbitResult]:
    """Run every random family of ``kind`` ("nonneg": eigenvalues in [0, 1]; "real": real eigenvalues in
    [-1, 1]) on 1^horizon in each dtype; one :class:`OrbitResult` per family and dtype.

    ``wide`` (default): each step is computed in a wider dtype, then rounded (the theorems' model). With
    ``wide=False`` a step is computed in the state's own dtype, rounding inside the step too; that is what an
    fp32 model does natively, and there ulp-sized cycles of period > 1 can occur (see docs/theory.md)."""
    if kind not in _DELTA_FAMILIES:
        raise ValueError(f"kind must be 'nonneg' or 'real', got {kind!r}")
    horizons = {**DEFAULT_HORIZONS, **(horizons or {})}
    builders = [_delta_batch, _diag_batch]
    out = []
    for bi, build in enumerate(builders):
        for di, dtype in enumerate(dtypes):
            g = torch.Generator().manual_seed(seed * 1000 + bi * 10 + di)
            cdt = _compute_dtype(dtype) if wide else dtype
            names, step, s0 = build(kind, models, dim, g, dtype, cdt)
            periods, transients = _orbit(step, s0, horizons[dtype], dtype, cdt)
            for name in dict.fromkeys(names):
                idx = [i for i, nm in enumerate(names) if nm == name]
                out.append(
                    OrbitResult(
                        name,
                        dtype_name(dtype),
                        horizons[dtype],
                        [periods[i] for i in idx],
                        [transients[i] for i in idx],
                    )
                )
    return out


def parity_orbit(dtypes=(torch.bfloat16, torch.float16, torch.float32), horizon: int = 3000) -> list[OrbitResult]:
    """The parity constructions on 1^k: period 2 (they alternate forever) in every dtype."""
    out = []
    for dtype in dtypes:
        cdt = _compute_dtype(dtype)
        q, k, v = torch.zeros(1, 1, 1, dtype=cdt), torch.ones(1, 1, 1, dtype=cdt), torch.zeros(1, 1, 1, dtype=cdt)
        beta = torch.full((1, 1), 2.0, dtype=cdt)

        def step(s, q=q, k=k, v=v, beta=beta):
            return delta_rule_step(q, k, v, beta, s)[1]

        p, t = _orbit(step, torch.full((1, 1, 1, 1), -1.0), horizon, dtype)
        out.append(OrbitResult("parity, DeltaNet reflection (Thm 3)", dtype_name(dtype), horizon, p, t))
        a1, b1 = torch.full((1, 1, 1), -1.0, dtype=cdt), torch.ones(1, 1, 1, dtype=cdt)

        def step2(s, a1=a1, b1=b1):
            return diag_scan(a1, b1, initial_state=s, output_final_state=True)[1]

        p, t = _orbit(step2, torch.zeros(1, 1), horizon, dtype)
        out.append(OrbitResult("parity, scalar a(1) = -1", dtype_name(dtype), horizon, p, t))
    return out


def rotation_orbit(
    m: int = 3, dtypes=(torch.bfloat16, torch.float16, torch.float32), horizon: int = 3000
) -> list[OrbitResult]:
    """Z_m's rotation layer (two reflections, eigenvalues e^{+-2 pi i / m}) on 1^k: the state's period is a
    multiple of m, which real eigenvalues cannot give (Thm 2). ``extra["decoded_period"]`` is the period of the
    decoded label argmax_i D_i^T h."""
    from ._lrnn import reflection_key

    out = []
    for dtype in dtypes:
        keys = torch.tensor([reflection_key(0.0), reflection_key(2 * math.pi / m)], dtype=torch.float64)
        k = torch.nn.functional.normalize(_on_grid(keys[None, :, None, :], dtype), dim=-1)  # [1, n_h = 2, 1, 2]
        cdt = k.dtype
        q, v = torch.zeros(1, 1, 2, dtype=cdt), torch.zeros(1, 2, 1, 1, dtype=cdt)
        beta = torch.full((1, 2, 1), 2.0, dtype=cdt)

        def step(s, k=k, q=q, v=v, beta=beta):
            return delta_rule_step(q, k, v, beta, s)[1]

        s0 = torch.tensor([1.0, 0.0]).reshape(1, 1, 2, 1)
        p, t = _orbit(step, s0, horizon, dtype)
        # the decoded label along the orbit, from the last 4m states
        ang = torch.arange(m, dtype=torch.float64) * 2 * math.pi / m
        D = torch.stack([ang.cos(), ang.sin()], -1)
        s, labels = s0.to(dtype), []
        for _ in range(horizon):
            s = step(s.to(cdt)).to(dtype)
            labels.append(int((D @ s.double().reshape(2)).argmax()))
        tail = labels[-4 * m :]
        dec = next((pp for pp in range(1, 2 * m + 1) if all(tail[i] == tail[i + pp] for i in range(2 * m))), 0)
        out.append(OrbitResult(f"Z_{m} rotation (Thm 3)", dtype_name(dtype), horizon, p, t, {"decoded_period": dec}))
    return out


def dtype_name(dtype: torch.dtype) -> str:
    """torch.bfloat16 -> "bfloat16"."""
    return str(dtype).replace("torch.", "")


# ---- Proposition 1 -------------------------------------------------------------------------------------------


def gh_products(
    R: int,
    n: int,
    k: int,
    beta_range: tuple[float, float],
    g: torch.Generator,
    beta_ends: bool = True,
    return_keys: bool = False,
):
    """R random products C_k ... C_1 of generalized Householders C = I - beta v v^T (unit v), [R, n, n] fp64.

    Formed by the library's delta rule: one token with n_h = k Householder steps, initial state I, no writes.
    With ``beta_ends`` some factors sit exactly at the ends of the range. ``return_keys``: also the keys
    [R, k, n]."""
    v = torch.nn.functional.normalize(torch.randn(R, 1, k, 1, n, generator=g, dtype=torch.float64), dim=-1)
    lo, hi = beta_range
    beta = lo + (hi - lo) * torch.rand(R, 1, k, 1, generator=g, dtype=torch.float64)
    if beta_ends:
        ends = torch.rand(R, 1, k, 1, generator=g, dtype=torch.float64)
        beta = torch.where(ends < 0.15, torch.full_like(beta, hi), beta)
        beta = torch.where(ends > 0.9, torch.full_like(beta, lo), beta)
    s0 = torch.eye(n, dtype=torch.float64).expand(R, 1, n, n).contiguous()
    q = torch.zeros(R, 1, 1, n, dtype=torch.float64)
    _, prod = delta_rule(
        q,
        v,
        torch.zeros(R, 1, k, 1, n, dtype=torch.float64),
        beta,
        initial_state=s0,
        output_final_state=True,
        backend="naive",
    )
    return (prod[:, 0], v[:, 0, :, 0]) if return_keys else prod[:, 0]


def prop1_norm(samples: int = 400, seed: int = 0, tol: float = 1e-9) -> dict:
    """Prop 1.1: every product of GH matrices with beta in [0, 2] has spectral norm <= 1."""
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    count = 0
    for n in (2, 3, 5, 8):
        for k in (1, 2, 3, n, 2 * n):
            M = gh_products(samples, n, k, (0.0, 2.0), g)
            worst = max(worst, float(torch.linalg.matrix_norm(M, ord=2).max()))
            count += samples
    return {"products": count, "max_norm": worst, "passed": worst <= 1.0 + tol}


def prop1_nonneg(samples: int = 400, seed: int = 1, tol: float = 1e-9) -> dict:
    """Prop 1.3b: with beta in [0, 1] and at most 2 factors every eigenvalue is real and in [0, 1].

    Also reports 3-factor products, for which the proposition says nothing: complex eigenvalues do appear
    there, so the bound k <= 2 is not an artefact of the test."""
    g = torch.Generator().manual_seed(seed)
    max_imag, min_real, max_abs, count = 0.0, 1.0, 0.0, 0
    for n in (2, 3, 5, 8):
        for k in (1, 2):
            ev = torch.linalg.eigvals(gh_products(samples, n, k, (0.0, 1.0), g))
            max_imag = max(max_imag, float(ev.imag.abs().max()))
            min_real = min(min_real, float(ev.real.min()))
            max_abs = max(max_abs, float(ev.abs().max()))
            count += samples
    ev3 = torch.linalg.eigvals(gh_products(max(samples, 1000), 3, 3, (0.0, 1.0), g))
    three = float(ev3.imag.abs().max())
    passed = max_imag <= tol and min_real >= -tol and max_abs <= 1 + tol
    return {
        "products": count,
        "max_imag": max_imag,
        "min_real": min_real,
        "max_abs": max_abs,
        "three_factor_max_imag": three,
        "passed": passed,
    }


def prop1_open_range(samples: int = 400, seed: int = 2, tol: float = 1e-12) -> dict:
    """Prop 1.3a: with beta in (0, 2) every eigenvalue is 1 or has modulus < 1 (beta drawn in [0.01, 1.99]).

    Classifying computed eigenvalues as "exactly 1" or "just below 1" would need a tolerance that a nearly
    defective matrix can defeat, so we test the structure instead: N maps the span of its keys into itself and
    is the identity on their orthogonal complement (eigenvalue 1 there, checked to ``tol``), so the other
    eigenvalues are those of N restricted to the span, whose spectral radius must be < 1 - ``tol``. As a
    contrast, beta = 2 exactly (reflections) puts eigenvalues on the unit circle away from 1. The radius gets
    close to 1 (1 - 5e-9 in the default sample) when two keys are nearly parallel and their betas small: that
    is a true eigenvalue below 1, computed to ~1e-15, not a rounding artefact."""
    g = torch.Generator().manual_seed(seed)
    radius, off, count = 0.0, 0.0, 0
    for n in (2, 3, 5, 8):
        for k in (1, 2, 3, n, 2 * n):
            N, keys = gh_products(samples, n, k, (0.01, 1.99), g, beta_ends=False, return_keys=True)
            U, S, _ = torch.linalg.svd(keys.transpose(1, 2))  # columns of U: the span of the keys first
            r = int((S > 1e-9).sum(-1).max())  # random keys: rank min(k, n) for every sample
            Q, P = U[:, :, :r], U[:, :, r:]
            inside = Q.transpose(1, 2) @ N @ Q  # N on the span of the keys
            radius = max(radius, float(torch.linalg.eigvals(inside).abs().max()))
            if P.shape[-1]:
                off = max(off, float((N @ P - P).abs().max()))
            count += samples
    ev2 = torch.linalg.eigvals(gh_products(samples, 3, 2, (2.0, 2.0), g, beta_ends=False))
    refl = float(ev2.abs()[(ev2 - 1).abs() > 1e-6].max())
    return {
        "products": count,
        "radius_on_span": radius,
        "identity_error_off_span": off,
        "beta2_max_abs_not_one": refl,
        "passed": radius < 1.0 - tol and off <= tol,
    }
