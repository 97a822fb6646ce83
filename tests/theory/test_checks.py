"""The numerical checks of Theorems 1, 2 and Proposition 1 (short horizons; the CLI runs the long ones)."""

from __future__ import annotations

import torch

from statetrack.theory import checks

SHORT = {torch.bfloat16: 500, torch.float16: 500, torch.float32: 500}


def test_theorem1_nonnegative_eigenvalues_freeze_in_low_precision():
    res = checks.eventual_periods("nonneg", dtypes=(torch.bfloat16,), models=8, horizons=SHORT)
    fams = {r.family for r in res}
    assert any("diagonal" in f for f in fams) and any("DeltaProduct" in f for f in fams)
    periods = [p for r in res for p in r.periods]
    assert all(p in (0, 1) for p in periods)  # 0 = not closed within the horizon (undecided)
    assert sum(p == 1 for p in periods) >= 0.9 * len(periods)


def test_theorem1_parity_constructions_alternate():
    for r in checks.parity_orbit(dtypes=(torch.bfloat16, torch.float16), horizon=50):
        assert r.periods == [2] and r.transients == [0]


def test_theorem2_real_eigenvalues_give_period_at_most_two():
    res = checks.eventual_periods("real", dtypes=(torch.bfloat16,), models=8, horizons=SHORT)
    periods = [p for r in res for p in r.periods]
    assert all(p in (0, 1, 2) for p in periods)
    assert 2 in periods  # negative eigenvalues do produce period 2
    for r in checks.rotation_orbit(3, dtypes=(torch.bfloat16,), horizon=400):  # complex ones: period 3
        assert r.periods[0] % 3 == 0 and r.extra["decoded_period"] == 3


def test_orbit_certificate_on_a_known_map():
    # x -> round(-x + 1) from 0 alternates 0, 1 with period 2 from the start; x -> x / 2 freezes at 0
    p, t = checks._orbit(lambda s: -s + 1, torch.zeros(1, 1), 20, torch.bfloat16)
    assert (p, t) == ([2], [0])
    p, t = checks._orbit(lambda s: s / 2, torch.ones(1, 1), 400, torch.bfloat16)
    assert p == [1] and t[0] > 100


def test_gh_products_are_the_matrix_products():
    g = torch.Generator().manual_seed(0)
    M = checks.gh_products(5, 4, 3, (0.0, 2.0), g)
    # rebuild with the same random draws
    g = torch.Generator().manual_seed(0)
    v = torch.nn.functional.normalize(torch.randn(5, 1, 3, 1, 4, generator=g, dtype=torch.float64), dim=-1)
    beta = 2.0 * torch.rand(5, 1, 3, 1, generator=g, dtype=torch.float64)
    ends = torch.rand(5, 1, 3, 1, generator=g, dtype=torch.float64)
    beta = torch.where(ends < 0.15, torch.full_like(beta, 2.0), beta)
    beta = torch.where(ends > 0.9, torch.zeros_like(beta), beta)
    for r in range(5):
        prod = torch.eye(4, dtype=torch.float64)
        for j in range(3):  # factor j = 1 acts first: later factors on the left
            k = v[r, 0, j, 0]
            prod = (torch.eye(4, dtype=torch.float64) - beta[r, 0, j, 0] * torch.outer(k, k)) @ prod
        assert torch.allclose(M[r], prod, atol=1e-12)


def test_proposition1():
    assert checks.prop1_norm(samples=40)["passed"]
    r = checks.prop1_nonneg(samples=40)
    assert r["passed"] and r["three_factor_max_imag"] > 1e-3  # the k <= 2 condition is needed
    r = checks.prop1_open_range(samples=40)
    assert r["passed"] and abs(r["beta2_max_abs_not_one"] - 1) < 1e-9  # beta = 2 reaches the unit circle
