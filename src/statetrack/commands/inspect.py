"""`statetrack inspect MODEL_DIR --data FILE [--tokens N]`: the transition eigenvalues a model uses on real text."""

from __future__ import annotations

from . import TEXT_DATA_HELP


def register(sub) -> None:
    p = sub.add_parser("inspect", help="the transition eigenvalues a language model uses on real text",
                       description="Run a saved model on text and report, per layer and head, the distribution of "
                       "its transition eigenvalues (1 - beta for DeltaNet, a for Mamba), the share below 0 and "
                       "-0.5, and the tokens that drive them lowest (eigenvalues.json, eigenvalues.png).")  # fmt: skip
    p.add_argument("model_dir")
    p.add_argument("--data", required=True, help=TEXT_DATA_HELP)
    p.add_argument("--tokens", type=int, default=8192, help="read at most this many tokens (default 8192)")
    p.add_argument("--window", type=int, default=2048, help="tokens per window read from an empty state")
    p.add_argument("--top", type=int, default=10, help="lowest-eigenvalue tokens listed per layer")
    p.add_argument("--out", default="inspect", help="output folder")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)


def run(args) -> int:
    from statetrack.lm.generate import load_model
    from statetrack.lm.inspect import inspect, save
    from statetrack.lm.perplexity import read_token_stream

    try:
        model, tok = load_model(args.model_dir, args.device)
        tokens = read_token_stream(args.data, tok, max_tokens=args.tokens)
        report = inspect(model, tok, tokens, window=min(args.window, tokens.numel()), top=args.top)
        paths = save(report, args.out)
    except (ValueError, FileNotFoundError, OSError) as e:
        raise SystemExit(f"statetrack inspect: {e}") from None
    for e in report["layers"]:
        if "below_0" in e:
            print(f"layer {e['layer']} ({e['mixer']}, min_eigenvalue {e['min_eigenvalue']}): min {e['min']:.3f}, "
                  f"{e['below_0']:.1%} below 0, {e['below_-0.5']:.1%} below -0.5")  # fmt: skip
    print(f"wrote {paths[0]} and {paths[1]}")
    return 0
