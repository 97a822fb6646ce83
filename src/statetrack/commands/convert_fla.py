"""`statetrack convert-fla SRC_DIR OUT_DIR`: an fla (flash-linear-attention 0.6.0) DeltaNet, Gated DeltaNet or
Gated DeltaProduct Hugging Face checkpoint as a statetrack causal LM (what maps and what cannot:
statetrack.lm.convert_fla)."""

from __future__ import annotations

import sys

HELP = "convert an fla DeltaNet / Gated DeltaNet / Gated DeltaProduct checkpoint to statetrack"
DESCRIPTION = (
    "Map an fla 0.6.0 Hugging Face checkpoint folder (config.json + safetensors) to a StateTrackForCausalLM saved "
    "in OUT_DIR (tokenizer files copied); allow_neg_eigval becomes min_eigenvalue = -1, else 0. What cannot be "
    "mapped is named, and nothing is written."
)


def register(sub) -> None:
    p = sub.add_parser("convert-fla", help=HELP, description=DESCRIPTION)
    p.add_argument("src_dir", metavar="SRC_DIR", help="the fla checkpoint folder")
    p.add_argument("out_dir", metavar="OUT_DIR", help="where to save the statetrack model")
    p.set_defaults(func=run)


def run(args) -> int:
    from statetrack.lm.convert_fla import convert_fla

    try:
        model = convert_fla(args.src_dir, args.out_dir)
    except (ValueError, OSError) as e:
        msg = " ".join(str(e).split())  # one line, whatever the message
        print(f"statetrack convert-fla: error: {msg}", file=sys.stderr)
        return 2
    cfg = model.config
    mixers = ", ".join(f"{cfg.mixers.count(m)} {m}" for m in dict.fromkeys(cfg.mixers))
    n = sum(p.numel() for p in model.parameters())
    print(f"converted {args.src_dir} -> {args.out_dir}: {mixers} layers, width {cfg.hidden_size}, "
          f"min_eigenvalue {cfg.min_eigenvalue}, {n:,} parameters")  # fmt: skip
    return 0
