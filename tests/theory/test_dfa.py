"""The DFA JSON format: valid files parse, malformed ones get an error naming what is wrong."""

from __future__ import annotations

import copy
import json
import random

import pytest

from statetrack.theory import DFA, DFAError

GOOD = {
    "states": ["even", "odd"],
    "alphabet": ["0", "1"],
    "transitions": {"even": {"0": "even", "1": "odd"}, "odd": {"0": "odd", "1": "even"}},
    "start": "even",
    "accepting": ["even"],
}


def test_parse_and_run():
    dfa = DFA.from_dict(GOOD)
    assert dfa.n_states == 2 and dfa.alphabet == ("0", "1")
    assert dfa.accepts("") and dfa.accepts("11") and not dfa.accepts("1011")
    assert DFA.from_json(json.dumps(dfa.to_dict())) == dfa


def test_integer_states():
    spec = {
        "states": [0, 1],
        "alphabet": ["a"],
        "transitions": {"0": {"a": 1}, "1": {"a": 0}},
        "start": 0,
        "accepting": [1],
    }
    assert DFA.from_dict(spec).accepts("a")


def bad(**changes):
    spec = copy.deepcopy(GOOD)
    for k, v in changes.items():
        if v is None:
            del spec[k]
        else:
            spec[k] = v
    return spec


CASES = [
    (bad(start=None), "missing field"),
    ({**GOOD, "final": []}, "unknown field"),
    (bad(states=[]), "states: must be a non-empty list"),
    (bad(states=["even", "even"]), "duplicate state"),
    (bad(states=["even", {"x": 1}]), "states: each state must be a string or an integer"),
    (bad(alphabet=["0", "10"]), "single characters"),
    (bad(alphabet=["0", "0"]), "duplicate symbol"),
    (bad(alphabet="01"), "alphabet: must be a non-empty list"),
    (bad(transitions={"even": {"0": "even", "1": "odd"}}), "state 'odd' has no transitions"),
    (bad(transitions={**GOOD["transitions"], "odd": {"0": "odd"}}), "no transition on symbol(s) ['1']"),
    (bad(transitions={**GOOD["transitions"], "odd": {"0": "odd", "1": "even", "2": "odd"}}), "not in the alphabet"),
    (
        bad(transitions={**GOOD["transitions"], "odd": {"0": "odd", "1": "nowhere"}}),
        "transitions['odd']['1']: 'nowhere' is not one of the states",
    ),
    (bad(transitions={**GOOD["transitions"], "ghost": {"0": "odd", "1": "odd"}}), "'ghost' is not one of the states"),
    (bad(transitions=[]), "transitions: must be an object"),
    (bad(start="nowhere"), "start: 'nowhere' is not one of the states"),
    (bad(accepting="even"), "accepting: must be a list"),
    (bad(accepting=["nowhere"]), "accepting: 'nowhere' is not one of the states"),
    ([1, 2], "must be a JSON object"),
]


@pytest.mark.parametrize(("spec", "message"), CASES)
def test_malformed(spec, message):
    with pytest.raises(DFAError) as e:
        DFA.from_dict(spec)
    assert message in str(e.value)


def test_not_json_and_bad_words():
    with pytest.raises(DFAError, match="not valid JSON"):
        DFA.from_json("{states: ")
    with pytest.raises(DFAError, match="character '2' at position 1"):
        DFA.from_dict(GOOD).encode("12")


def test_minimize_keeps_the_language():
    r = random.Random(0)
    for seed in range(20):
        n, s = 6, 2
        rr = random.Random(seed)
        d = [[rr.randrange(n) for _ in range(s)] for _ in range(n)]
        dfa = DFA.from_function(n, s, lambda q, a, d=d: d[q][a], 0, [q for q in range(n) if rr.random() < 0.5])
        small = dfa.minimize()
        assert small.n_states <= n
        assert small.minimize().n_states == small.n_states
        for _ in range(50):
            w = "".join(r.choice("ab") for _ in range(r.randrange(12)))
            assert dfa.accepts(w) == small.accepts(w)
