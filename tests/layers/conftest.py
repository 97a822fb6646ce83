"""Small instances of every mixer, in fp64, for the layer tests."""

from __future__ import annotations

import torch

from statetrack.layers import MIXERS, get_mixer_class

D = 16


# name -> constructor kwargs beyond d_model (kept small: these run in fp64 on a 2-core CPU)
CASES: dict[str, dict] = {
    "deltanet": dict(n_heads=2),
    "deltanet_noconv_gate": dict(n_heads=2, use_short_conv=False, use_output_gate=True),
    "gated_deltanet": dict(n_heads=2),
    "deltaproduct": dict(n_heads=2, num_householder=2),
    "mamba": dict(d_state=4),
    "diagonal_rnn": dict(d_state=8),
    "full_matrix_rnn": dict(n=4),
    "transformer": dict(n_heads=2),
    "transformer_window": dict(n_heads=2, window=3),
    "lstm": dict(),
    "slstm": dict(n_heads=2),
    "mlstm": dict(n_heads=2),
}


def mixer_of(case: str) -> str:
    """The mixer a case builds ("deltanet_noconv_gate" -> "deltanet", "transformer_window" -> "transformer")."""
    return case.split("_noconv")[0].removesuffix("_window")


assert {mixer_of(c) for c in CASES} == set(MIXERS)


def make(case: str, min_eigenvalue: float | None = None, seed: int = 0):
    name = mixer_of(case)
    kw = dict(CASES[case])
    if min_eigenvalue is not None:
        kw["min_eigenvalue"] = min_eigenvalue
    torch.manual_seed(seed)
    return get_mixer_class(name)(D, **kw).double()


def assert_gradients_reach_every_parameter(m, x: torch.Tensor) -> None:
    """Backward through ``m`` on x [B, T, D] (requires_grad): every parameter and x get finite, nonzero grads."""
    y, _ = m(x)
    (y * torch.randn_like(y)).sum().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or p.grad.abs().max() == 0]  # fmt: skip
    assert not missing, f"no gradient for {missing}"
    assert x.grad is not None and x.grad.abs().max() > 0
