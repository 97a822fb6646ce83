"""`statetrack ppl MODEL_DIR [MODEL_DIR ...] --data FILE --max-length N`: perplexity against token position."""

from __future__ import annotations

import json
from pathlib import Path

from . import TEXT_DATA_HELP


def register(sub) -> None:
    p = sub.add_parser("ppl", help="perplexity against token position (PNG + JSON), several models in one plot",
                       description="Cut the text of --data into windows of --max-length tokens, read each from an "
                       "empty state and plot the mean perplexity at each position (the paper's Figure 5).")  # fmt: skip
    p.add_argument("model_dirs", nargs="+", help="saved model folders (config, weights, tokenizer)")
    p.add_argument("--data", required=True, help=TEXT_DATA_HELP)
    p.add_argument("--max-length", type=int, required=True, help="window length in tokens")
    p.add_argument("--max-windows", type=int, default=None, help="at most this many windows")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--bins", type=int, default=64, help="position bins in the plot and JSON (default 64)")
    p.add_argument("--train-length", type=int, default=None, help="draw the training length as a line")
    p.add_argument("--labels", default=None, help="comma-separated plot labels (default: folder names)")
    p.add_argument("--out", default="ppl", help="output folder (ppl.json, ppl.png)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)


def run(args) -> int:
    from statetrack.lm.generate import load_model
    from statetrack.lm.perplexity import binned, plot, position_nll, read_token_stream

    labels = args.labels.split(",") if args.labels else [Path(d).name for d in args.model_dirs]
    try:
        if len(labels) != len(args.model_dirs):
            raise ValueError(f"--labels names {len(labels)} models but {len(args.model_dirs)} are given")
        curves = {}
        for label, d in zip(labels, args.model_dirs, strict=True):
            model, tok = load_model(d, args.device)
            tokens = read_token_stream(args.data, tok)
            nll = position_nll(model, tokens, args.max_length, args.batch_size, args.max_windows)
            curves[label] = {"model_dir": str(d), **binned(nll, args.bins)}
            print(f"{label}: ppl {curves[label]['ppl'][0]:.2f} at the start, {curves[label]['ppl'][-1]:.2f} at "
                  f"{args.max_length} tokens")  # fmt: skip
    except (ValueError, FileNotFoundError, OSError) as e:
        raise SystemExit(f"statetrack ppl: {e}") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ppl.json").write_text(json.dumps({"data": args.data, "max_length": args.max_length, "curves": curves},
                                             indent=1))  # fmt: skip
    plot(curves, out / "ppl.png", args.train_length)
    print(f"wrote {out / 'ppl.json'} and {out / 'ppl.png'}")
    return 0
