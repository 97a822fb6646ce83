"""`statetrack generate` and the loading it rests on: a saved folder continues a prompt as the model's own greedy
decoding does; bad folders and arguments fail with one line naming what is wrong."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from statetrack.cli import main
from statetrack.lm.generate import generate_text, load_model
from statetrack.lm.tokenizer import check_vocab, load_tokenizer

from .tiny import TEXT, tiny_model_dir, tiny_tokenizer


def test_generate_text_is_the_models_greedy_continuation(tmp_path):
    model, tok = load_model(tiny_model_dir(tmp_path / "m"), device="cpu")
    text = generate_text(model, tok, "the cat sat", max_new_tokens=5)
    ids = tok("the cat sat", return_tensors="pt").input_ids
    seq = ids
    with torch.no_grad():
        for _ in range(5):
            seq = torch.cat([seq, model(seq).logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert text == tok.decode(seq[0, ids.shape[1] :], skip_special_tokens=True)
    # sampling is reproducible with a seed
    a = generate_text(model, tok, "a dog", max_new_tokens=6, temperature=1.0, seed=3)
    assert a == generate_text(model, tok, "a dog", max_new_tokens=6, temperature=1.0, seed=3)


def test_cli_prints_prompt_and_continuation(tmp_path, capsys):
    d = tiny_model_dir(tmp_path / "m")
    assert main(["generate", str(d), "--prompt", "the dog", "--max-new-tokens", "3", "--device", "cpu"]) == 0
    out = capsys.readouterr().out.strip()
    model, tok = load_model(d, device="cpu")
    assert out == ("the dog" + generate_text(model, tok, "the dog", max_new_tokens=3)).strip()


def test_cli_errors_are_one_line(tmp_path):
    with pytest.raises(SystemExit, match="has no config.json"):
        main(["generate", str(tmp_path), "--prompt", "x"])
    d = tiny_model_dir(tmp_path / "m")
    with pytest.raises(SystemExit, match="max_new_tokens must be >= 1"):
        main(["generate", str(d), "--prompt", "the", "--max-new-tokens", "0", "--device", "cpu"])


def test_missing_tensors_are_refused(tmp_path):
    d = tiny_model_dir(tmp_path / "m")
    weights = load_file(d / "model.safetensors")
    dropped = sorted(weights)[3]
    del weights[dropped]
    save_file(weights, d / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=f"missing keys: \\['{dropped}'\\]"):
        load_model(d, device="cpu")


def test_tokenizer_bigger_than_the_model_is_refused(tmp_path):
    d = tiny_model_dir(tmp_path / "m", vocab_size=5)
    with pytest.raises(ValueError, match="the tokenizer has 13 tokens but the model's vocab_size is 5"):
        load_model(d, device="cpu")


def test_tokenizers_offline():
    tok = load_tokenizer("mistral-v1")
    assert len(tok) == 32000
    import sentencepiece as spm

    from statetrack.lm.tokenizer import _shipped_file

    sp = spm.SentencePieceProcessor(model_file=str(_shipped_file("mistral-v1")))
    assert tok(TEXT, add_special_tokens=False).input_ids == sp.encode(TEXT)
    with pytest.raises(ValueError, match="neither a tokenizer folder or file"):
        load_tokenizer("no-such-tokenizer")
    check_vocab(tiny_tokenizer(), 13)
