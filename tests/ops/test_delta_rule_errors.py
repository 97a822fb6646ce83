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


PATH_ERRORS = [
    (dict(algorithm="fast"), ValueError, "algorithm must be one of"),
    (dict(backend="naive", algorithm="chunk"), ValueError, "algorithm='chunk'"),
    (dict(backend="torch", algorithm="recurrent"), ValueError, "algorithm='recurrent'"),
    (dict(backend="naive", chunk_size=16), ValueError, "chunk_size"),
    (dict(chunk_size=True), ValueError, "chunk_size"),
    (dict(backend="torch", precision="tf32"), ValueError, "precision"),
    (dict(precision="bf16x3"), ValueError, "precision must be one of"),
    (dict(backend="torch", triton_config={"BV": 16}), ValueError, "triton_config"),
    (dict(triton_config={"nonsense": 1}), ValueError, "triton_config"),
    (dict(triton_config=[("BV", 16)]), TypeError, "triton_config"),
]


@pytest.mark.parametrize("kw,err,msg", PATH_ERRORS, ids=[str(kw) for kw, _, _ in PATH_ERRORS])
def test_path_settings_that_cannot_apply_raise(kw, err, msg):
    """An explicit algorithm, chunk_size, precision or triton_config that the chosen path does not have is refused,
    naming the argument, instead of being ignored."""
    with pytest.raises(err, match=msg):
        delta_rule(**base(), **kw)


def test_auto_backend_takes_one_with_the_algorithm_asked_for():
    x = base()
    assert torch.equal(delta_rule(**x, algorithm="recurrent")[0], delta_rule(**x, backend="naive")[0])
    assert torch.equal(delta_rule(**x, algorithm="chunk")[0], delta_rule(**x, backend="torch")[0])
    assert torch.equal(delta_rule(**x, chunk_size=3)[0], delta_rule(**x, backend="torch", chunk_size=3)[0])


def test_triton_algorithm_choice(monkeypatch):
    """Which triton launcher runs, with what: "auto" goes by length unless a setting names the algorithm; the
    settings reach the launcher as given ("auto" precision as tf32x3, no triton_config as None)."""
    from statetrack.ops.delta_rule import api

    calls = []
    monkeypatch.setattr(api, "_available", lambda device, dtype: {"naive": True, "torch": True, "triton": True})
    monkeypatch.setattr(api, "delta_rule_triton", lambda *a, **kw: calls.append(("chunk", kw)) or (a[0], None))
    monkeypatch.setattr(api, "delta_rule_recurrent_triton", lambda *a, **kw: calls.append(("rec", kw)) or (a[0], None))

    def run(T=5, **kw):
        calls.clear()
        delta_rule(**make_inputs(B=1, T=T, H=1, K=4, V=4, h0=False), backend="triton", **kw)
        return calls[0]

    assert run() == ("rec", {"config": None})  # 5 tokens: token by token
    assert run(T=300) == ("chunk", {"chunk_size": None, "precision": "tf32x3", "config": None})
    assert run(algorithm="chunk")[0] == "chunk" and run(T=300, algorithm="recurrent")[0] == "rec"
    assert run(chunk_size=8) == ("chunk", {"chunk_size": 8, "precision": "tf32x3", "config": None})
    assert run(precision="ieee")[1]["precision"] == "ieee"
    assert run(triton_config={"BV_grad": 64}) == ("chunk", {"chunk_size": None, "precision": "tf32x3",
                                                            "config": {"BV_grad": 64}})  # fmt: skip
    assert run(T=300, triton_config={"BT": 16}) == ("rec", {"config": {"BT": 16}})
    for kw, msg in [
        (dict(algorithm="recurrent", chunk_size=8), "chunk_size"),
        (dict(algorithm="recurrent", precision="tf32"), "precision"),
        (dict(triton_config={"BT": 16}, chunk_size=8), "different triton algorithms"),
    ]:
        with pytest.raises(ValueError, match=msg):
            run(**kw)


def test_auto_precision_takes_bf16_only_where_its_kernels_are_right():
    """ "auto": bf16 for bf16 inputs on a GPU with 64-row chunks and the bf16 blocks as fixed; tf32x3 for fp32 and
    fp16 inputs, n_h > 1, on the CPU (the interpreter), other chunk widths and tuning that changes the bf16 blocks."""
    from statetrack.ops.delta_rule.triton import auto_precision

    cuda, cpu, bf, f16, f32 = torch.device("cuda"), torch.device("cpu"), torch.bfloat16, torch.float16, torch.float32
    assert auto_precision(bf, cuda, 1, None, None) == "bf16"
    assert auto_precision(bf, cuda, 1, None, {"block_v": 32}) == "bf16"
    assert auto_precision(bf, cuda, 1, 64, {"BV_grad": 64, "warps_grad": 4}) == "bf16"  # the bf16 blocks as given
    assert auto_precision(bf, cuda, 1, None, {"warps_grad": 8, "warps_prep": 8}) == "bf16"  # warps: right at 8 too
    for args in [
        (f32, cuda, 1, None, None),
        (f16, cuda, 1, None, None),
        (bf, cuda, 2, None, None),  # DeltaProduct: bf16 with repeated keys not yet run on a GPU
        (bf, cpu, 1, None, None),
        (bf, cuda, 1, 32, None),
        (bf, cuda, 1, None, {"BV_grad": 32}),
    ]:
        assert auto_precision(*args) == "tf32x3", args  # fmt: skip


def test_triton_block_settings_are_checked():
    from statetrack.ops.delta_rule.triton.chunk import make_config
    from statetrack.ops.delta_rule.triton.recurrent import make_blocks

    cpu = torch.device("cpu")
    assert make_config(1, 64, 64, 4, cpu).C == 64 and make_config(3, 64, 64, 4, cpu).C == 21  # 64 // n_h tokens
    assert make_config(2, 64, 64, 4, cpu, chunk_size=8).BL == 16
    assert make_blocks(32, 32, 4, {"BT": 16, "BV": 16}) == make_blocks(32, 32, 4, {"BT": 16, "BV": 16, "warps": 1})
    for call, msg in [
        (lambda: make_config(2, 64, 64, 4, cpu, chunk_size=40), "chunk_size"),
        (lambda: make_config(1, 64, 64, 4, cpu, tuning={"BS": 32}, chunk_size=16), "BS must be <="),
        (lambda: make_config(1, 64, 64, 4, cpu, tuning={"BK": 8}), "must be >= 16"),
        (lambda: make_config(1, 64, 64, 4, cpu, tuning={"BT": 8}), "no keys"),
        (lambda: make_blocks(32, 32, 4, {"BT": 12}), "power of two"),
        (lambda: make_blocks(32, 32, 4, {"warps": 0}), "positive int"),
        (lambda: make_blocks(32, 32, 4, {"BV_grad": 32}), "no keys"),
    ]:
        with pytest.raises(ValueError, match=msg):
            call()
