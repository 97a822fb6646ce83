"""`statetrack tasks ...` through statetrack.cli.main."""

from __future__ import annotations

import json

from statetrack.cli import main

from .slow_paths import chomsky_answer


def run(capsys, *argv):
    rc = main(["tasks", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_list(capsys):
    rc, out, _ = run(capsys, "list")
    assert rc == 0
    for name in ("parity", "modarith-brackets-mult", "s5-4tokens", "z60-2tokens", "a4xz5"):
        assert f"\n{name} " in out
    rc, out, _ = run(capsys, "list", "--json")
    lines = [json.loads(x) for x in out.splitlines()]
    assert len(lines) == 16 and lines[0]["name"] == "parity" and lines[0]["chance"] == 0.5


def test_describe_json(capsys):
    rc, out, _ = run(capsys, "describe", "modarith", "--json")
    d = json.loads(out)
    assert rc == 0 and d["name"] == "modarith" and d["chance"] == 0.2 and d["params"]["m"] == 5
    assert d["vocab"]["5"] == "+" and d["vocab"]["9"] == "<bos>" and d["vocab"]["10"] == "<pad>"
    rc, out, _ = run(capsys, "describe", "s5", "--json")
    d = json.loads(out)
    assert d["elements"]["0"] == [0, 1, 2, 3, 4] and d["vocab"]["0"] == "[0,1,2,3,4]" and d["group_order"] == 120
    assert "convention" in d
    rc, out, _ = run(capsys, "describe", "z60", "--json")
    assert json.loads(out)["elements"]["59"] == 59
    rc, out, _ = run(capsys, "describe", "s5-4tokens")
    assert rc == 0 and "s5-4tokens (word-problem, group)" in out and "filler" in out


def test_sample_lines_are_what_the_model_sees(capsys):
    rc, out, _ = run(capsys, "sample", "modarith", "--n", "5", "--length", "3:21", "--seed", "4")
    assert rc == 0
    rows = [json.loads(x) for x in out.splitlines()]
    assert len(rows) == 5
    for r in rows:
        assert set(r) == {"input", "target", "mask"}
        L = len(r["input"])
        assert len(r["target"]) == len(r["mask"]) == L and 3 <= L <= 21
        assert r["mask"] == [0] * (L - 1) + [1]
        vocab = ["0", "1", "2", "3", "4", "+", "-", "*", "="]
        assert r["target"][-1] == chomsky_answer("modarith", [vocab[t] for t in r["input"][1:]], {"m": 5})
    rc, again, _ = run(capsys, "sample", "modarith", "--n", "5", "--length", "3:21", "--seed", "4")
    assert again == out


def test_sample_group_padded_text_and_overrides(capsys):
    rc, out, _ = run(
        capsys, "sample", "s5", "--n", "2", "--length", "6", "--set", "num_tokens_per_transition=2", "--text"
    )
    rows = [json.loads(x) for x in out.splitlines()]
    assert rc == 0 and rows[0]["input"][2] == 120 and rows[0]["mask"] == [0, 1, 1, 1, 1, 1, 1]
    assert rows[0]["input_text"][0] == "<bos>" and rows[0]["target_text"][0] == ""
    rc, out, _ = run(capsys, "sample", "parity", "--n", "3", "--padded")
    rows = [json.loads(x) for x in out.splitlines()]
    assert len({len(r["input"]) for r in rows}) == 1


def test_errors_exit_2_with_a_message(capsys):
    rc, out, err = run(capsys, "sample", "parityy")
    assert rc == 2 and "unknown task 'parityy'" in err and "did you mean 'parity'" in err and out == ""
    rc, _, err = run(capsys, "sample", "modarith", "--length", "40")
    assert rc == 2 and "odd" in err
    rc, _, err = run(capsys, "describe", "s5", "--set", "generators=bogus")
    assert rc == 2 and "valid choices" in err


def test_test_set_info(capsys):
    rc, out, _ = run(capsys, "test-set", "parity", "--size", "64")
    d = json.loads(out)
    assert (
        rc == 0
        and d["size"] == 64
        and d["sha256"] == "38e3733b367b5d5690704c0262aa3bc8b5517d754e53bb43bbc665476ddd4684"
    )
