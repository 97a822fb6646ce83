"""Tokenizers that work offline: a local Hugging Face tokenizer folder or file, or one shipped inside a wheel.

``load_tokenizer(name_or_path)``:
- a folder with tokenizer files (tokenizer.json, tokenizer_config.json, ...; e.g. a model folder) or a
  ``tokenizer.json`` file: loaded by transformers;
- ``"mistral-v1"``: the 32k SentencePiece tokenizer of Mistral 7B v1, the one the DeltaNet papers train with,
  read from the ``mistral-common`` wheel (no download);
- a SentencePiece ``.model`` file.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED = {"mistral-v1": ("mistral_common", "data/tokenizer.model.v1")}


def load_tokenizer(name_or_path: str | Path):
    """A transformers tokenizer (PreTrainedTokenizerBase) for ``name_or_path``; ValueError naming it if none."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    name = str(name_or_path)
    if name in SHIPPED:
        return _sentencepiece(_shipped_file(name))
    p = Path(name)
    if p.is_dir():
        try:
            return AutoTokenizer.from_pretrained(p)
        except (OSError, ValueError) as e:
            raise ValueError(f"tokenizer: {name!r} is a folder without a tokenizer ({e})") from None
    if p.is_file() and p.suffix == ".json":
        return PreTrainedTokenizerFast(tokenizer_file=str(p))
    if p.is_file() and p.suffix == ".model":
        return _sentencepiece(p)
    raise ValueError(f"tokenizer: {name!r} is neither a tokenizer folder or file nor one of {sorted(SHIPPED)}")


def _shipped_file(name: str) -> Path:
    import importlib.util

    package, rel = SHIPPED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"tokenizer {name!r} ships in the {package} wheel: pip install {package.replace('_', '-')}")
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    if not path.is_file():
        raise ValueError(f"tokenizer {name!r}: {path} is missing from the installed {package}")
    return path


def _sentencepiece(path: Path):
    """A SentencePiece BPE model as a fast (tokenizers) tokenizer: the same ids as sentencepiece gives."""
    from transformers import LlamaTokenizer
    from transformers.tokenization_utils_sentencepiece import SentencePieceExtractor

    vocab, _, merges = SentencePieceExtractor(str(path)).extract()
    return LlamaTokenizer(vocab=vocab, merges=merges, legacy=False)


def check_vocab(tokenizer, vocab_size: int, what: str = "model") -> None:
    """The tokenizer's ids must fit the model's embedding: ValueError naming both sizes otherwise."""
    n = len(tokenizer)
    if n > vocab_size:
        raise ValueError(f"the tokenizer has {n} tokens but the {what}'s vocab_size is {vocab_size}: ids >= "
                         f"{vocab_size} have no embedding")  # fmt: skip
