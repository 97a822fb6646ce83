"""A tiny word-level tokenizer and a tiny model saved together, as `save_pretrained` folders are: what the LM
command tests load (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import torch

TEXT = "the cat sat on the mat . the dog sat on the log . a cat and a dog ."


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted(set(TEXT.split()))
    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def tiny_model_dir(path: Path, mixer: str = "deltanet", vocab_size: int | None = None, **settings) -> Path:
    from statetrack.models import StateTrackConfig, StateTrackForCausalLM

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    settings = {mixer: settings or {"n_heads": 2}}
    cfg = StateTrackConfig(vocab_size=vocab_size or len(tok), hidden_size=16, num_hidden_layers=2, mixer=mixer,
                           mixer_settings=settings, bos_token_id=1, eos_token_id=2)  # fmt: skip
    StateTrackForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path
