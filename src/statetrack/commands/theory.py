"""`statetrack theory ...`: the paper's theory as runnable, exact constructions and numerical checks.

statetrack theory check [--json] [--length N]     every construction and check, as a table
statetrack theory dfa FILE [--run STRINGS_FILE]   Krohn-Rhodes cascade LRNN of a DFA given as JSON
"""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "theory",
        help="exact constructions of the paper's theorems, and numerical checks",
        description=__doc__.splitlines()[0],
    )
    tsub = p.add_subparsers(dest="theory_command", required=True, metavar="{check,dfa}")

    c = tsub.add_parser(
        "check",
        help="run every construction and check; print a table",
        description="Run every construction on the library's tasks and every numerical check.",
    )
    c.add_argument("--json", action="store_true", help="print a JSON list of rows (with a boolean 'passed')")
    c.add_argument("--length", type=int, default=10_000, help="sequence length for the constructions (default 10000)")
    c.add_argument("--batch", type=int, default=16, help="sequences per construction (default 16)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--quick", action="store_true", help="a subset with short horizons (for smoke tests)")
    c.set_defaults(func=run_check)

    d = tsub.add_parser(
        "dfa",
        help="build the Krohn-Rhodes cascade LRNN of a DFA (JSON file)",
        description='DFA JSON: {"states": [...], "alphabet": [...], "transitions": '
        '{state: {symbol: state}}, "start": state, "accepting": [...]}; symbols are single '
        "characters.",
    )
    d.add_argument("file", help="the DFA as JSON")
    d.add_argument(
        "--run",
        metavar="STRINGS_FILE",
        help="one string per line; prints 1 (accepted) or 0 per line, computed by the LRNN alone",
    )
    d.add_argument("--json", action="store_true", help="print the report (and results) as JSON")
    d.add_argument("--no-minimize", action="store_true", help="decompose the DFA as given (default: minimal)")
    d.set_defaults(func=run_dfa)


def run_check(args) -> int:
    from statetrack.theory.report import format_table, run_all

    if args.length < 1 or args.batch < 1:
        print("error: --length and --batch must be positive", file=sys.stderr)
        return 2
    rows = run_all(length=args.length, batch=args.batch, seed=args.seed, quick=args.quick)
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2, default=str))
    else:
        print(format_table(rows))
        failed = [r for r in rows if not r.passed]
        print(f"\n{len(rows) - len(failed)}/{len(rows)} passed" + (f"; FAILED: {len(failed)}" if failed else ""))
    return 0 if all(r.passed for r in rows) else 1


def _read_strings(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return text.splitlines()  # "\n", "\r\n"; an empty line is the empty string


def run_dfa(args) -> int:
    from statetrack.theory.dfa import DFA, DFAError
    from statetrack.theory.krohn_rhodes import CascadeLRNN, krohn_rhodes

    try:
        dfa = DFA.from_file(args.file)
    except OSError as e:
        print(f"error: {args.file}: cannot read it ({e.strerror or e})", file=sys.stderr)
        return 2
    except DFAError as e:
        print(f"error: {args.file}: malformed DFA: {e}", file=sys.stderr)
        return 2
    words = None
    if args.run is not None:
        try:
            lines = _read_strings(args.run)
            words = [dfa.encode(s, where=f"{args.run}, line {i + 1}") for i, s in enumerate(lines)]
        except OSError as e:
            print(f"error: {args.run}: cannot read it ({e.strerror or e})", file=sys.stderr)
            return 2
        except UnicodeDecodeError:
            print(f"error: {args.run}: not UTF-8 text", file=sys.stderr)
            return 2
        except DFAError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    cascade = krohn_rhodes(dfa, minimize=not args.no_minimize)
    lrnn = CascadeLRNN(cascade)
    info = {"input_states": dfa.n_states, **lrnn.describe(), "notes": cascade.notes}
    accepted = None
    if words is not None:
        accepted = lrnn.accepts(words)
        # the LRNN alone computed these; a disagreement with the DFA itself would be a bug in this library
        direct = [(dfa.run(w)[-1] if w else dfa.start) in dfa.accepting for w in words]
        if accepted != direct:
            bad = next(i for i, (a, b) in enumerate(zip(accepted, direct, strict=True)) if a != b)
            print(f"internal error: the LRNN and the DFA disagree on line {bad + 1}", file=sys.stderr)
            return 3

    if args.json:
        out = dict(info)
        if accepted is not None:
            out["accepted"] = [int(a) for a in accepted]
        print(json.dumps(out, indent=2))
        return 0
    report = _format_report(dfa, cascade, lrnn)
    if accepted is None:
        print(report)
    else:  # results on stdout, one per line; the report on stderr
        print(report, file=sys.stderr)
        for a in accepted:
            print(int(a))
    return 0


def _format_report(dfa, cascade, lrnn) -> str:
    d = lrnn.describe()
    lines = [f"DFA: {dfa.n_states} states, alphabet {list(dfa.alphabet)}"]
    lines += [f"  {n}" for n in cascade.notes]
    lines.append(
        f"cascade of permutation-reset automata: depth {d['depth']}, width {d['width']} "
        f"(largest layer state dimension)"
    )
    lines.append("layer  states  state dim K  Householders/token  letter classes  resets")
    for i, (lv, ly) in enumerate(zip(cascade.levels, lrnn.layers, strict=True)):
        lines.append(
            f"{i + 1:>5}  {lv.n:>6}  {ly.table.dim:>11}  {ly.table.n_h:>18}  {len(lv.maps):>14}  "
            f"{'yes' if lv.resets else 'no':>6}"
        )
    lines.append(f"verified on all {cascade.reachable} reachable (cascade, DFA) state pairs")
    return "\n".join(lines)
