"""Packed documents through every mixer (fp64): outputs and per-document final states equal the documents run
one by one, native (DeltaNet family) or through the generic paths; the packed conv never reaches across."""

from __future__ import annotations

import pytest
import torch

from statetrack.layers.base import causal_conv, position_in_document
from statetrack.layers.varlen import cu_seqlens_from_position_ids, mixer_forward

from .conftest import CASES, D, make, mixer_of

LENS = [6, 1, 70, 3]  # ragged, one longer than a 64-token chunk


def _docs(seed=0):
    torch.manual_seed(seed)
    docs = [torch.randn(1, n, D, dtype=torch.float64) for n in LENS]
    cu = torch.tensor([0, *torch.tensor(LENS).cumsum(0).tolist()], dtype=torch.int32)
    return docs, torch.cat(docs, 1), cu


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("output_state", [False, True])
def test_packed_equals_one_by_one(case, output_state):
    m = make(case)
    docs, row, cu = _docs()
    y, final = mixer_forward(m, row, None, output_state, cu)
    ref = [m(d, None, True) for d in docs]
    torch.testing.assert_close(y, torch.cat([r[0] for r in ref], 1), rtol=1e-9, atol=1e-10)
    if output_state and mixer_of(case) == "transformer":  # caches of different lengths, right-aligned
        for i, (_, st) in enumerate(ref):
            n = st["k"].shape[2]
            assert bool((final["kpos"][i, :-n] == -1).all())  # the empty slots on the left
            torch.testing.assert_close(final["kpos"][i : i + 1, -n:], st["kpos"], rtol=0, atol=0)
            for key in ("k", "v"):
                torch.testing.assert_close(final[key][i : i + 1, :, -n:], st[key], rtol=0, atol=0)
        # and the batch continues from it as each document does alone
        nxt = torch.randn(len(LENS), 3, D, dtype=torch.float64)
        y2, _ = m(nxt, final, True)
        for i, (_, st) in enumerate(ref):
            torch.testing.assert_close(y2[i : i + 1], m(nxt[i : i + 1], st, True)[0], rtol=1e-9, atol=1e-10)
    elif output_state:
        for key in final:
            torch.testing.assert_close(final[key], torch.cat([r[1][key] for r in ref]), rtol=1e-9, atol=1e-10)
    else:
        assert final is None


@pytest.mark.parametrize("case", ["deltanet", "mamba", "mlstm"])
def test_packed_documents_continue_from_states(case):
    m = make(case)
    docs, row, cu = _docs(1)
    starts = [m(torch.randn(1, 5, D, dtype=torch.float64), None, True)[1] for _ in LENS]
    state = {k: torch.cat([s[k] for s in starts]) for k in starts[0]}
    y, final = mixer_forward(m, row, state, True, cu)
    ref = [m(d, s, True) for d, s in zip(docs, starts, strict=True)]
    torch.testing.assert_close(y, torch.cat([r[0] for r in ref], 1), rtol=1e-9, atol=1e-10)
    for key in final:
        torch.testing.assert_close(final[key], torch.cat([r[1][key] for r in ref]), rtol=1e-9, atol=1e-10)


def test_packed_conv_never_reaches_across_a_boundary():
    torch.manual_seed(2)
    _, row, cu = _docs(2)
    w, b = torch.randn(D, 4, dtype=torch.float64), torch.randn(D, dtype=torch.float64)
    y, cache = causal_conv(row, w, b, cu_seqlens=cu)
    c = cu.tolist()
    for n, (s, e) in enumerate(zip(c, c[1:], strict=False)):
        yd, cd = causal_conv(row[:, s:e], w, b)
        torch.testing.assert_close(y[:, s:e], yd, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(cache[n : n + 1], cd, rtol=1e-12, atol=1e-12)


def test_positions_and_cu_seqlens_from_position_ids():
    cu = torch.tensor([0, 2, 3, 7], dtype=torch.int32)
    assert position_in_document(cu, 7).tolist() == [0, 1, 0, 0, 1, 2, 3]
    pos = torch.tensor([[0, 1, 0, 1, 2], [3, 4, 0, 0, 1]])  # a row may start mid-document: a new one there
    assert cu_seqlens_from_position_ids(pos).tolist() == [0, 2, 5, 7, 8, 10]


def test_packed_rows_must_be_one():
    m = make("deltanet")
    with pytest.raises(ValueError, match="batch size must be 1"):
        mixer_forward(m, torch.randn(2, 4, D, dtype=torch.float64), None, False, torch.tensor([0, 4]))
