"""Text generation from a saved model folder (weights, config and tokenizer side by side)."""

from __future__ import annotations

from pathlib import Path

import torch

from statetrack.train.device import resolve_device

from .tokenizer import check_vocab, load_tokenizer


def load_model(model_dir: str | Path, device: str = "auto", dtype: str = "auto"):
    """(model, tokenizer) from ``model_dir``; device "auto" = CUDA if there is one; dtype "auto" = bf16 on CUDA,
    fp32 on the CPU. ValueError naming the folder when it holds no statetrack model."""
    from transformers import AutoModelForCausalLM  # statetrack's import registered our model type

    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise ValueError(f"model folder {str(path)!r} has no config.json (save one with model.save_pretrained)")
    dev = resolve_device(device, "--device")
    dt = {"auto": torch.bfloat16 if dev.type == "cuda" else torch.float32, "bf16": torch.bfloat16,
          "fp32": torch.float32, "fp64": torch.float64}[dtype]  # fmt: skip
    model = load_checked(AutoModelForCausalLM, path, dtype=dt).to(dev).eval()
    tokenizer = load_tokenizer(path)
    check_vocab(tokenizer, model.config.vocab_size)
    return model, tokenizer


def load_checked(auto_cls, path: Path, **kw):
    """``auto_cls.from_pretrained(path)`` that refuses missing or unexpected tensors (transformers would warn and
    initialise them at random), naming them."""
    model, info = auto_cls.from_pretrained(path, output_loading_info=True, **kw)
    for what in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        bad = sorted(info.get(what) or [])
        if bad:
            raise ValueError(
                f"checkpoint {str(path)!r}: {what.replace('_', ' ')}: {bad[:8]}{' ...' if len(bad) > 8 else ''}"
            )
    return model


@torch.no_grad()
def generate_text(model, tokenizer, prompt: str, max_new_tokens: int = 64, temperature: float = 0.0,
                  top_p: float = 1.0, seed: int | None = None) -> str:  # fmt: skip
    """The prompt's continuation (greedy at temperature 0, else sampling)."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if seed is not None:
        torch.manual_seed(seed)
    dev = next(model.parameters()).device
    ids = tokenizer(prompt, return_tensors="pt").input_ids.to(dev)
    if ids.shape[1] == 0:
        raise ValueError("prompt: it encodes to no tokens")
    kw = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else dict(do_sample=False)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, pad_token_id=pad,
                         **kw)  # fmt: skip
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
