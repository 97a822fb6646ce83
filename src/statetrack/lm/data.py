"""Language-model data: tokenize local text into memory-mapped token shards, then pack them into training rows.

- ``prepare(sources, tokenizer, out_dir)``: documents from ``.txt`` / ``.jsonl`` / ``.json`` / ``.parquet``
  files, folders of them, or the embedded ``builtin:code`` / ``builtin:prose`` corpora (what each source
  yields: :mod:`statetrack.lm.data_sources`) -> a dataset folder (layout: :mod:`statetrack.lm.data_shards`)
  with a ``train`` and a held-out ``validation`` split.
- ``TokenShards(dir, split)``: one split, memory-mapped.
- ``PackedLoader(shards, batch_size, seq_len, rank=, world_size=, seed=)``: endless, resumable [B, T] batches
  (packing, sharding and resume rules: :mod:`statetrack.lm.data_loader`).
- ``check_data(dir, vocab_size, seq_len)``: everything that can be wrong with a dataset, before any step.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import deque
from pathlib import Path

import numpy as np

from statetrack.atomic import atomic_write_json
from statetrack.lm.data_loader import PackedLoader
from statetrack.lm.data_shards import (
    FORMAT,
    FORMAT_VERSION,
    SHARD_TOKENS,
    SPLITS,
    ShardWriter,
    TokenShards,
    content_hash,
    read_meta,
    token_dtype,
)
from statetrack.lm.data_sources import BUILTIN, describe_builtin, resolve_sources

__all__ = ["BUILTIN", "PackedLoader", "TokenShards", "check_data", "prepare", "held_out"]

CHUNK_CHARS = 1 << 22  # ~4 MB of text per task sent to a worker: large enough to amortise, small enough to stream
CHUNK_DOCS = 4096


def held_out(index: np.ndarray, split_ratio: float) -> np.ndarray:
    """Which documents (0-based, in corpus order) go to validation: i iff ceil((i + 1) r) > ceil(i r).

    That is the first document of every block of 1 / r, spread over the whole corpus, ceil(N r) of N in all
    (at least one for any r > 0), and it needs no count of N in advance (the sources are streamed)."""
    if split_ratio == 0:
        return np.zeros(len(index), dtype=bool)
    i = np.asarray(index, dtype=np.float64)
    return np.ceil((i + 1) * split_ratio) > np.ceil(i * split_ratio)


def prepare(
    sources,
    tokenizer,
    out_dir,
    *,
    split_ratio: float = 0.01,
    workers: int | None = None,
    text_field: str = "text",
    max_documents: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    shard_tokens: int = SHARD_TOKENS,
) -> Path:
    """Tokenize ``sources`` into a dataset folder ``out_dir`` and return its path.

    sources: a path, ``builtin:code`` / ``builtin:prose``, or a list of them (read in the order given).
    tokenizer: a name or path for :func:`statetrack.lm.tokenizer.load_tokenizer` (``mistral-v1``, a folder, a
        ``tokenizer.json``, a ``.model``), or a tokenizer object.
    Each non-empty document becomes ``[BOS] ids EOS`` (BOS where the tokenizer has one; EOS is required).
    split_ratio: the held-out share, in documents (rule: :func:`held_out`); 0 holds out nothing.
    workers: tokenizing processes (None: the CPUs this process may use, at most 8; 1: in this process).
    max_documents: read at most this many non-empty documents in all (a quick dataset from a large source).
    overwrite: replace an existing ``out_dir`` (atomically); otherwise an existing one is a ValueError.

    Atomic: everything is written to a temporary folder next to ``out_dir`` and renamed onto it at the end, so an
    interrupted or failed prepare leaves no ``out_dir`` (and no temporary folder). Errors name the argument: a
    missing source, an unknown tokenizer, a missing ``text_field``, an empty corpus -> ValueError."""
    from tqdm.auto import tqdm

    import statetrack

    out_dir = Path(out_dir)
    if not isinstance(split_ratio, int | float) or not 0 <= split_ratio < 1:
        raise ValueError(f"split_ratio must be a number in [0, 1), got {split_ratio!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer or None, got {workers!r}")
    if max_documents is not None and (not isinstance(max_documents, int) or max_documents < 1):
        raise ValueError(f"max_documents must be a positive integer or None, got {max_documents!r}")
    if not isinstance(text_field, str) or not text_field:
        raise ValueError(f"text_field must be a column name, got {text_field!r}")
    if out_dir.exists() and not overwrite:
        raise ValueError(f"out_dir: {str(out_dir)!r} exists; pass overwrite=True (--overwrite) to replace it")
    resolved = resolve_sources(sources)
    tok, tok_name = _tokenizer(tokenizer)
    vocab_size = len(tok)
    if tok.eos_token_id is None:
        raise ValueError(f"tokenizer: {tok_name!r} has no EOS token to end each document with")
    dtype = token_dtype(vocab_size)
    workers = workers or max(
        1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        writers = {s: ShardWriter(tmp, s, dtype, shard_tokens) for s in SPLITS}
        counts = [s.count() for s in resolved]
        total = None if None in counts else sum(counts)
        if total is not None and max_documents is not None:
            total = min(total, max_documents)
        per_source = []
        bar = tqdm(total=total, unit="doc", desc="tokenizing", disable=not progress, dynamic_ncols=True)
        with _Encoder(tok, workers) as enc:
            n_docs = 0
            pending: deque = deque()

            def drain(block: bool) -> None:
                while pending and (block or pending[0][1].done() or len(pending) > 2 * workers):
                    first, fut = pending.popleft()
                    tokens, lengths = fut.result()
                    val = held_out(np.arange(first, first + len(lengths)), split_ratio)
                    tok_val = np.repeat(val, lengths)
                    writers["train"].add(tokens[~tok_val], lengths[~val])
                    writers["validation"].add(tokens[tok_val], lengths[val])
                    bar.set_postfix(tokens=writers["train"].tokens + writers["validation"].tokens, refresh=False)

            for src in resolved:
                got = 0
                reader = _NonEmpty(src.documents(text_field), None if max_documents is None else max_documents - n_docs)
                for texts in _chunks(reader):
                    pending.append((n_docs, enc.submit(texts)))
                    n_docs += len(texts)
                    got += len(texts)
                    bar.update(reader.take_read())
                    drain(block=False)
                bar.update(reader.take_read())
                entry = {"source": src.name, "documents": got}
                if src.kind in BUILTIN:
                    entry.update(describe_builtin(src.kind))
                per_source.append(entry)
                if max_documents is not None and n_docs >= max_documents:
                    break
            drain(block=True)
        bar.close()
        splits = {s: w.close() for s, w in writers.items()}
        if n_docs == 0:
            raise ValueError(f"sources: no documents in {[s.name for s in resolved]} (all empty)")
        if splits["train"]["documents"] == 0:
            raise ValueError(
                f"split_ratio={split_ratio} holds out all {n_docs} document(s), leaving none to train "
                "on: use split_ratio=0 (--split-ratio 0) for so small a corpus"
            )
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "statetrack_version": statetrack.__version__,
            "tokenizer": tok_name,
            "tokenizer_class": type(tok).__name__,
            "vocab_size": vocab_size,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
            "dtype": str(dtype),
            "tokens": splits["train"]["tokens"] + splits["validation"]["tokens"],
            "documents": n_docs,
            "content_hash": content_hash(dtype, splits),
            "split_ratio": split_ratio,
            "text_field": text_field,
            "sources": per_source,
            "splits": splits,
        }
        atomic_write_json(tmp / "meta.json", meta)
        _move_into_place(tmp, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def check_data(
    dir,
    vocab_size: int,
    seq_len: int,
    *,
    max_seq_len: int | None = None,
    batch_size: int = 1,
    world_size: int = 1,
    splits=("train",),
) -> dict:
    """Validate a prepared dataset for a model before any training step; returns its meta.json.

    Raises ValueError naming what is wrong: ``dir`` missing or not a prepared dataset; a split missing, empty, or
    a shard missing, empty or truncated; the data's vocab_size (its tokenizer's) above the model's
    ``vocab_size``; ``seq_len`` not a positive integer or above ``max_seq_len`` (what the config allows); fewer
    tokens in a split than one global batch of ``batch_size * world_size`` rows of ``seq_len``."""
    if not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    if not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive integer, got {seq_len!r}")
    if max_seq_len is not None and seq_len > max_seq_len:
        raise ValueError(f"seq_len={seq_len} is above what the config allows (max_seq_len={max_seq_len})")
    meta = read_meta(dir)
    if meta["vocab_size"] > vocab_size:
        raise ValueError(
            f"vocab_size: the data in {str(dir)!r} was tokenized with {meta['tokenizer']!r} "
            f"({meta['vocab_size']} tokens) but the model's vocab_size is {vocab_size}: ids >= "
            f"{vocab_size} have no embedding"
        )
    for split in splits:
        shards = TokenShards(dir, split)
        need = seq_len * batch_size * world_size
        if len(shards) < need:
            raise ValueError(
                f"split {split!r} of {str(dir)!r} has {len(shards)} tokens, fewer than one batch of "
                f"{batch_size * world_size} rows x seq_len={seq_len} = {need}"
            )
    return meta


def _tokenizer(tokenizer):
    if isinstance(tokenizer, str | Path):
        from statetrack.lm.tokenizer import load_tokenizer

        return load_tokenizer(tokenizer), str(tokenizer)
    if not callable(tokenizer) or not hasattr(tokenizer, "eos_token_id"):
        raise ValueError(f"tokenizer must be a name, a path or a transformers tokenizer, got {type(tokenizer)}")
    return tokenizer, getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__


class _NonEmpty:
    """The non-empty texts of ``texts``, at most ``limit``; ``take_read()``: rows read since the last call (the
    progress bar counts rows, empty ones too, as the sources' counts do)."""

    def __init__(self, texts, limit: int | None):
        self.texts, self.limit, self.read = texts, limit, 0

    def __iter__(self):
        kept = 0
        for text in self.texts:
            if self.limit is not None and kept >= self.limit:
                return
            self.read += 1
            if text:
                kept += 1
                yield text

    def take_read(self) -> int:
        n, self.read = self.read, 0
        return n


def _chunks(texts):
    chunk, chars = [], 0
    for text in texts:
        chunk.append(text)
        chars += len(text)
        if chars >= CHUNK_CHARS or len(chunk) >= CHUNK_DOCS:
            yield chunk
            chunk, chars = [], 0
    if chunk:
        yield chunk


# --- tokenizing, in this process or in a pool; results come back in submission order ---

_WORKER_TOKENIZER = None


def _init_worker(tok) -> None:
    global _WORKER_TOKENIZER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the processes are the parallelism; no threads on top
    _WORKER_TOKENIZER = tok


def _encode(texts: list[str], tok=None) -> tuple[np.ndarray, np.ndarray]:
    """texts -> (tokens [sum of lengths] in the data's dtype, lengths int64 [len(texts)]), BOS/EOS added."""
    tok = tok or _WORKER_TOKENIZER
    vocab_size = len(tok)
    dtype = token_dtype(vocab_size)
    bos, eos = tok.bos_token_id, tok.eos_token_id
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    head = [] if bos is None else [bos]
    docs = [np.asarray(head + d + [eos], dtype=np.int64) for d in ids]
    lengths = np.asarray([len(d) for d in docs], dtype=np.int64)
    flat = np.concatenate(docs)
    if flat.size and (flat.min() < 0 or flat.max() >= vocab_size):
        raise ValueError(f"tokenizer: produced id {int(flat.max())} outside its own vocabulary of {vocab_size}")
    return flat.astype(dtype), lengths


class _Done:
    def __init__(self, value):
        self._value = value

    def done(self) -> bool:
        return True

    def result(self):
        return self._value


class _Encoder:
    def __init__(self, tok, workers: int):
        self.tok, self.workers, self.pool = tok, workers, None

    def __enter__(self):
        if self.workers > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: the parent may hold tokenizers' (Rust) threads or torch's, which fork would copy mid-use
            self.pool = ProcessPoolExecutor(
                self.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(self.tok,)
            )
        return self

    def submit(self, texts):
        if self.pool is None:
            return _Done(_encode(texts, self.tok))
        return self.pool.submit(_encode, texts)

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(wait=exc[0] is None, cancel_futures=True)


def _move_into_place(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    if not overwrite:
        raise ValueError(f"out_dir: {str(out_dir)!r} appeared while preparing; not replacing it")
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    os.rename(out_dir, old / "data")  # two renames: there is no atomic swap of folders, but never a half dataset
    os.rename(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
