"""`statetrack generate MODEL_DIR --prompt TEXT`: continue a prompt with a saved language model."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("generate", help="continue a prompt with a saved language model",
                       description="Load a model folder (save_pretrained output with its tokenizer) and print the "
                       "continuation of a prompt: greedy at --temperature 0, else sampled.")  # fmt: skip
    p.add_argument("model_dir", help="folder with config.json, model.safetensors and the tokenizer")
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument("--max-new-tokens", type=int, default=64, help="tokens to generate (default 64)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default), > 0 = sampling")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1: off)")
    p.add_argument("--seed", type=int, default=None, help="sampling seed")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.set_defaults(func=run)


def run(args) -> int:
    from statetrack.lm.generate import generate_text, load_model

    try:
        model, tokenizer = load_model(args.model_dir, args.device)
        text = generate_text(model, tokenizer, args.prompt, args.max_new_tokens, args.temperature, args.top_p,
                             args.seed)  # fmt: skip
    except (ValueError, FileNotFoundError, OSError) as e:
        raise SystemExit(f"statetrack generate: {e}") from None
    print(args.prompt + text)
    return 0
