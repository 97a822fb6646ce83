"""`statetrack theory check` and `statetrack theory dfa`."""

from __future__ import annotations

import json

from statetrack.cli import main

MOD3 = {
    "states": ["r0", "r1", "r2"],
    "alphabet": ["a", "b"],
    "transitions": {"r0": {"a": "r1", "b": "r0"}, "r1": {"a": "r2", "b": "r1"}, "r2": {"a": "r0", "b": "r2"}},
    "start": "r0",
    "accepting": ["r0"],
}


def test_check_json_quick(capsys):
    rc = main(["theory", "check", "--quick", "--length", "120", "--batch", "4", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert rows and all(r["passed"] is True for r in rows)
    assert {"statement", "construction", "length", "result", "passed"} <= set(rows[0])
    statements = " ".join(r["statement"] for r in rows)
    for thm in ("Thm 1", "Thm 2", "Thm 3", "Thm 4", "Thm 6", "Prop 1"):
        assert thm in statements


def test_check_table(capsys):
    rc = main(["theory", "check", "--quick", "--length", "60", "--batch", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.startswith("| statement | construction | length | result | pass |")
    assert "FAIL" not in out and "passed" in out


def test_dfa_report_and_run(tmp_path, capsys):
    f = tmp_path / "mod3.json"
    f.write_text(json.dumps(MOD3))
    assert main(["theory", "dfa", str(f)]) == 0
    out = capsys.readouterr().out
    assert "depth 1" in out and "width 3" in out
    words = ["aaa", "", "ab", "bab", "aabaa", "bbbbbb", "abababa"]
    s = tmp_path / "words.txt"
    s.write_text("\n".join(words) + "\n")
    assert main(["theory", "dfa", str(f), "--run", str(s)]) == 0
    captured = capsys.readouterr()
    expected = [str(int(w.count("a") % 3 == 0)) for w in words]
    assert captured.out.split() == expected
    assert "depth" in captured.err  # the report goes to stderr when --run prints results
    assert main(["theory", "dfa", str(f), "--run", str(s), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["depth"] == 1 and out["accepted"] == [int(e) for e in expected]


def test_dfa_errors(tmp_path, capsys):
    bad = dict(MOD3, transitions={**MOD3["transitions"], "r2": {"a": "r0"}})
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(bad))
    assert main(["theory", "dfa", str(f)]) == 2
    err = capsys.readouterr().err
    assert "malformed DFA" in err and "transitions['r2']" in err and "'b'" in err
    f.write_text("{not json")
    assert main(["theory", "dfa", str(f)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["theory", "dfa", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
    good = tmp_path / "good.json"
    good.write_text(json.dumps(MOD3))
    s = tmp_path / "words.txt"
    s.write_text("ab\nabc\n")
    assert main(["theory", "dfa", str(good), "--run", str(s)]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "'c'" in err
