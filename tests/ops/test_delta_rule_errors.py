"""Bad input to the delta rule raises a ValueError/TypeError that names the argument."""

from __future__ import annotations

import pytest
import torch

from statetrack.ops import delta_rule, delta_rule_step, value_checks

from .delta_rule_inputs import make_inputs


def base(**kw):
    return make_inputs(B=2, T=5, H=2, K=4, V=3, gate=True, **kw)


def case(**changes):
    x = base()
    x.update(changes)
    return x


X = base()
BAD = [
    ("q", case(q=X["q"][0]), ValueError),
    ("k", case(k=X["k"][..., :3]), ValueError),
    ("k", case(k=X["k"][:, :, None, None]), ValueError),
    ("v", case(v=X["v"][:, :4]), ValueError),
    ("beta", case(beta=X["beta"][..., :1]), ValueError),
    ("log_decay", case(log_decay=X["log_decay"][:, :, :1]), ValueError),
    ("initial_state", case(initial_state=X["initial_state"][:1]), ValueError),
    ("initial_state", case(initial_state=X["initial_state"].float()), TypeError),
    ("q", case(q=X["q"].long()), TypeError),
    ("beta", case(beta=X["beta"].int()), TypeError),
    ("k", case(k="not a tensor"), TypeError),
    ("q, k and v", case(v=X["v"].float()), TypeError),
    ("beta", case(beta=X["beta"] + 2.5), ValueError),
    ("beta", case(beta=-X["beta"] - 0.1), ValueError),
    ("beta", case(beta=X["beta"] * float("nan")), ValueError),
    ("log_decay", case(log_decay=X["log_decay"].abs() + 0.1), ValueError),
    ("device", case(q=X["q"].to("meta")), ValueError),
]


@pytest.mark.parametrize("name,inputs,err", BAD, ids=[f"{i}-{b[0]}" for i, b in enumerate(BAD)])
def test_bad_input_names_the_argument(name, inputs, err):
    with pytest.raises(err, match=name):
        delta_rule(**inputs)


def test_value_checks_can_be_switched_off():
    x = case(beta=X["beta"] + 2.5)
    with value_checks(False):
        delta_rule(**x, backend="torch")  # no error: the user asked for speed
    with pytest.raises(ValueError, match="beta"):
        delta_rule(**x)


def test_value_checks_switch_is_per_thread_and_set_value_checks_per_process():
    """A run inside ``value_checks(False)`` in one thread leaves another thread's checks on (runs trained side
    by side in threads); ``set_value_checks`` sets the default every thread starts from."""
    import threading

    from statetrack.ops import set_value_checks

    x = case(beta=X["beta"] + 2.5)

    def in_other_thread() -> list[Exception]:
        errors = []

        def run():
            try:
                delta_rule(**x, backend="torch")
            except ValueError as e:
                errors.append(e)

        t = threading.Thread(target=run)
        t.start()
        t.join(10)
        return errors

    with value_checks(False):
        delta_rule(**x, backend="torch")  # this thread: off
        errors = in_other_thread()
    assert len(errors) == 1 and "beta" in str(errors[0])  # the other thread: still on
    set_value_checks(False)
    try:
        assert in_other_thread() == []  # off by default now
        with value_checks(True), pytest.raises(ValueError, match="beta"):
            delta_rule(**x, backend="torch")
    finally:
        set_value_checks(True)


def test_cu_seqlens_errors():
    x = make_inputs(B=1, T=10, H=2, K=4, V=3, h0=False)
    for cu, err, msg in [
        (torch.tensor([0, 6, 4, 10]), ValueError, "non-decreasing"),
        (torch.tensor([0, 4, 9]), ValueError, "end at T"),
        (torch.tensor([1, 10]), ValueError, "start at 0"),
        (torch.tensor([0.0, 10.0]), TypeError, "int32 or int64"),
        (torch.tensor([[0, 10]]), ValueError, "1-D"),
    ]:
        with pytest.raises(err, match=msg):
            delta_rule(**x, cu_seqlens=cu)
    x2 = make_inputs(B=2, T=10, H=2, K=4, V=3, h0=False)
    with pytest.raises(ValueError, match="batch size must be 1"):
        delta_rule(**x2, cu_seqlens=torch.tensor([0, 10]))
    x["initial_state"] = torch.zeros(1, 2, 4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="initial_state"):
        delta_rule(**x, cu_seqlens=torch.tensor([0, 4, 10]))  # 2 sequences need 2 states


def test_backend_and_chunk_size_errors():
    x = base()
    with pytest.raises(ValueError, match="backend must be one of"):
        delta_rule(**x, backend="cuda-magic")
    with pytest.raises(ValueError, match="not available"):
        delta_rule(**x, backend="triton")
    with pytest.raises(ValueError, match="chunk_size"):
        delta_rule(**x, chunk_size=0)


def test_step_errors():
    x = base()
    q, k, v, b = x["q"][:, 0], x["k"][:, 0], x["v"][:, 0], x["beta"][:, 0]
    with pytest.raises(ValueError, match="state"):
        delta_rule_step(q, k, v, b, torch.zeros(3, 2, 4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="k"):
        delta_rule_step(q, k[..., :2], v, b)
    with pytest.raises(ValueError, match="beta"):
        delta_rule_step(q, k, v, b + 3)
