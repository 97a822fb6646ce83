"""The on-disk form of a prepared dataset, and its reader ``TokenShards``.

A dataset folder::

    meta.json                      tokenizer, vocab_size, dtype, counts, content_hash, statetrack version
    train/tokens-00000.bin         the split's tokens, raw ``dtype`` (uint16 if vocab_size <= 65536, else uint32)
    train/docs-00000.npy           int64 [n_docs + 1]: document d of the shard is tokens[docs[d]:docs[d + 1]]
    validation/...                 the held-out split, the same way

Each document is ``[BOS] tokens [EOS]`` (BOS where the tokenizer has one) and lies whole in one shard. A split's
documents are its shards' documents in shard order. ``content_hash`` is a SHA-256 of both splits' tokens and
document lengths in that order, so it does not depend on how the documents were cut into shards or on how many
workers tokenized them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

FORMAT = "statetrack-token-shards"
FORMAT_VERSION = 1
SPLITS = ("train", "validation")
SHARD_TOKENS = 1 << 28  # a new shard after this many tokens: 512 MB of uint16, small enough to copy around


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab_size <= 2**16), else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


class ShardWriter:
    """Appends documents of one split to ``folder`` as shards; ``close()`` returns the split's meta entry."""

    def __init__(self, folder: Path, split: str, dtype: np.dtype, shard_tokens: int = SHARD_TOKENS):
        self.folder, self.split, self.dtype, self.shard_tokens = Path(folder), split, dtype, shard_tokens
        (self.folder / split).mkdir(parents=True, exist_ok=True)
        self.shards: list[dict] = []
        self.hash = hashlib.sha256()
        self.tokens = 0
        self.documents = 0
        self._file = None

    def add(self, tokens: np.ndarray, lengths: np.ndarray) -> None:
        """Append documents: ``tokens`` [sum(lengths)] in ``dtype``, ``lengths`` int64 [n] (each >= 1)."""
        if len(lengths) == 0:
            return
        if self._file is None:
            self._open()
        self._file.write(np.ascontiguousarray(tokens, dtype=self.dtype).tobytes())
        self._lengths.append(np.asarray(lengths, dtype=np.int64))
        self._shard_tokens_written += int(tokens.shape[0])
        self.hash.update(np.ascontiguousarray(tokens, dtype=self.dtype).tobytes())
        self.hash.update(np.asarray(lengths, dtype="<i8").tobytes())
        self.tokens += int(tokens.shape[0])
        self.documents += len(lengths)
        if self._shard_tokens_written >= self.shard_tokens:
            self._close_shard()

    def close(self) -> dict:
        if self._file is not None:
            self._close_shard()
        return {
            "tokens": self.tokens,
            "documents": self.documents,
            "sha256": self.hash.hexdigest(),
            "shards": self.shards,
        }

    def _open(self) -> None:
        i = len(self.shards)
        self._tokens_rel = f"{self.split}/tokens-{i:05d}.bin"
        self._docs_rel = f"{self.split}/docs-{i:05d}.npy"
        self._file = open(self.folder / self._tokens_rel, "wb")
        self._lengths: list[np.ndarray] = []
        self._shard_tokens_written = 0

    def _close_shard(self) -> None:
        self._file.close()
        self._file = None
        lengths = np.concatenate(self._lengths)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        np.save(self.folder / self._docs_rel, offsets)
        self.shards.append(
            {
                "tokens": self._tokens_rel,
                "docs": self._docs_rel,
                "n_tokens": int(offsets[-1]),
                "n_documents": len(lengths),
            }
        )


def content_hash(dtype: np.dtype, splits: dict[str, dict]) -> str:
    h = hashlib.sha256(str(np.dtype(dtype)).encode())
    for name in SPLITS:
        h.update(f"|{name}:{splits[name]['sha256']}".encode())
    return "sha256:" + h.hexdigest()


def read_meta(folder) -> dict:
    """meta.json of a prepared dataset; ValueError naming the folder or file when it is not one."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"data: {str(folder)!r} is not a folder (prepare one with `statetrack data prepare`)")
    path = folder / "meta.json"
    if not path.is_file():
        raise ValueError(
            f"data: {str(folder)!r} has no meta.json: not a prepared dataset "
            "(`statetrack data prepare SRC --tokenizer T --out DIR` makes one)"
        )
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"data: cannot read {str(path)!r}: {e}") from None
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"data: {str(path)!r} is not a {FORMAT} v{FORMAT_VERSION} meta.json")
    return meta


class TokenShards:
    """One split of a prepared dataset, memory-mapped: ``len()`` tokens in ``documents`` documents.

    ``document(i)`` is document i's tokens (a read-only numpy view, [BOS] ... EOS), ``doc_lengths`` int64
    [documents], ``vocab_size`` / ``dtype`` / ``content_hash`` / ``meta`` from meta.json. Raises ValueError
    naming the folder, split or shard file when the dataset is missing, empty, truncated or inconsistent."""

    def __init__(self, dir, split: str = "train"):
        self.dir = Path(dir)
        self.meta = read_meta(self.dir)
        if split not in self.meta["splits"]:
            raise ValueError(f"split: {split!r} is not in {str(self.dir)!r} (its splits: {list(self.meta['splits'])})")
        self.split = split
        self.vocab_size = int(self.meta["vocab_size"])
        self.dtype = np.dtype(self.meta["dtype"])
        self.content_hash = self.meta["content_hash"]
        info = self.meta["splits"][split]
        if info["documents"] == 0 or info["tokens"] == 0:
            raise ValueError(f"split: {split!r} of {str(self.dir)!r} is empty (0 documents)")
        self._tokens, lengths, starts, first = [], [], [], [0]
        for s in info["shards"]:
            self._tokens.append(self._map_shard(s))
            offsets = self._load_offsets(s)
            lengths.append(np.diff(offsets))
            starts.append(offsets[:-1])
            first.append(first[-1] + s["n_documents"])
        self.doc_lengths = np.concatenate(lengths)
        if int(self.doc_lengths.sum()) != info["tokens"] or len(self.doc_lengths) != info["documents"]:
            raise ValueError(
                f"data: the shards of split {split!r} in {str(self.dir)!r} do not add up to meta.json's "
                f"{info['tokens']} tokens / {info['documents']} documents"
            )
        self._first_doc = np.asarray(first, dtype=np.int64)  # shard k holds documents [first[k], first[k + 1])
        self._doc_start = np.concatenate(starts)  # document i starts at this token of its shard

    @property
    def documents(self) -> int:
        return len(self.doc_lengths)

    def __len__(self) -> int:
        return int(self.meta["splits"][self.split]["tokens"])

    def document(self, i: int) -> np.ndarray:
        """Document ``i``'s tokens, [doc_lengths[i]] in ``dtype`` (a view of the memory map)."""
        if not 0 <= i < self.documents:
            raise IndexError(f"document {i} out of range [0, {self.documents})")
        k = int(np.searchsorted(self._first_doc, i, side="right")) - 1
        start = int(self._doc_start[i])
        return self._tokens[k][start : start + int(self.doc_lengths[i])]

    def __repr__(self) -> str:
        return (
            f"TokenShards({str(self.dir)!r}, split={self.split!r}: {len(self)} tokens, {self.documents} "
            f"documents, vocab_size={self.vocab_size}, {self.dtype})"
        )

    def _map_shard(self, s: dict) -> np.ndarray:
        path = self.dir / s["tokens"]
        if not path.is_file():
            raise ValueError(f"data: shard {str(path)!r} is missing")
        size = path.stat().st_size
        if size == 0:
            raise ValueError(f"data: shard {str(path)!r} is empty (0 bytes)")
        if size != s["n_tokens"] * self.dtype.itemsize:
            raise ValueError(
                f"data: shard {str(path)!r} has {size} bytes, meta.json says {s['n_tokens']} tokens of "
                f"{self.dtype} ({s['n_tokens'] * self.dtype.itemsize} bytes): truncated or replaced"
            )
        return np.memmap(path, dtype=self.dtype, mode="r")

    def _load_offsets(self, s: dict) -> np.ndarray:
        path = self.dir / s["docs"]
        try:
            offsets = np.load(path)
        except (OSError, ValueError) as e:
            raise ValueError(f"data: cannot read document offsets {str(path)!r}: {e}") from None
        ok = (
            offsets.ndim == 1
            and len(offsets) == s["n_documents"] + 1
            and offsets[0] == 0
            and offsets[-1] == s["n_tokens"]
            and bool((np.diff(offsets) > 0).all())
        )
        if not ok:
            raise ValueError(
                f"data: document offsets {str(path)!r} do not match meta.json's shard of "
                f"{s['n_tokens']} tokens / {s['n_documents']} documents"
            )
        return offsets
