"""Where the documents of ``statetrack data prepare`` come from: local files, folders and the embedded corpora.

A source is one of
- a ``.txt`` file: the whole file is **one document** (a book, a source file, an article stays whole, so
  long-context training and per-position perplexity see it as written; put many short documents in a
  ``.jsonl`` file instead);
- a ``.jsonl`` / ``.json`` / ``.parquet`` file, read through ``datasets`` from the local file (streamed, no
  cache written): one document per row, its ``text_field`` column (default ``text``);
- a folder: every such file under it (recursively), in sorted order of their paths relative to the folder;
- ``builtin:code`` or ``builtin:prose``: the embedded corpora below, which need nothing downloaded;
- ``hf:NAME`` or ``hf:NAME:SPLIT`` (default split ``train``): a Hugging Face hub dataset, streamed through
  ``datasets`` where a network (or its cache) is there; one document per row, as for jsonl.

Empty documents (text ``""``) are skipped; everything else is kept as it is (no stripping, no dedup across
sources), in source order.

The embedded corpora (deterministic: same interpreter, same files, same order, same text):

``builtin:code``: the running interpreter's standard library, every ``*.py`` file under
``sysconfig.get_paths()["stdlib"]`` (its test suite included), one document per file, in sorted order of the
relative path. Left out: ``site-packages`` / ``dist-packages`` (not the standard library), ``pydoc_data`` (it is
the prose corpus) and files that are not UTF-8 (a few test files are deliberately in other encodings).

``builtin:prose``: ``pydoc_data.topics``, the Python Language Reference and library reference sections that
``help()`` shows (about 80 topics, ~0.46 MB of English technical prose on 3.11), one document per topic in
sorted order of the topic name, identical texts kept once. Why this one: it ships inside every CPython, so it
is there on any fresh machine with no extra dependency; it is written prose by people, not generated; and its
topics are long (up to ~60 kB), which per-position perplexity needs. The alternatives measured in this
project's environment were worse: the docstrings of transformers (6 MB, pinned) are 75% repeated lines (the
per-model argument templates), so a held-out split would leak; numpy's (1.6 MB) are a third repeated lines and
a tenth doctest code; the wheels ship no other prose beyond licence texts.
"""

from __future__ import annotations

import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BUILTIN = ("builtin:code", "builtin:prose")
TEXT_SUFFIXES = (".txt",)
ROW_SUFFIXES = (".jsonl", ".json", ".parquet")
SUFFIXES = TEXT_SUFFIXES + ROW_SUFFIXES


@dataclass(frozen=True)
class Source:
    """One input: ``name`` as given, ``kind`` (builtin:code, builtin:prose, txt, json, parquet, hf), ``path``."""

    name: str
    kind: str
    path: Path | None = None

    def count(self) -> int | None:
        """How many rows/documents this source yields before empty ones are skipped (None: not known cheaply)."""
        if self.kind == "txt":
            return 1
        if self.kind == "builtin:code":
            return len(_stdlib_files())
        if self.kind == "builtin:prose":
            return len(_prose_topics())
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(self.path).metadata.num_rows
        if self.kind == "json" and self.path.suffix == ".jsonl":
            with open(self.path, "rb") as f:
                return sum(1 for line in f if line.strip())
        return None

    def documents(self, text_field: str = "text") -> Iterator[str]:
        """The texts of this source, empty ones included (the caller skips them)."""
        if self.kind == "txt":
            yield _read_text(self.path)
        elif self.kind == "builtin:code":
            for p in _stdlib_files():
                text = _read_utf8(p)
                if text is not None:
                    yield text
        elif self.kind == "builtin:prose":
            yield from _prose_topics().values()
        else:
            yield from _rows(self, text_field)


def resolve_sources(sources) -> list[Source]:
    """The sources, folders expanded; ValueError naming the first that is missing, of an unknown kind or empty."""
    if isinstance(sources, str | Path):
        sources = [sources]
    sources = list(sources)
    if not sources:
        raise ValueError("sources: give at least one file, folder or builtin corpus")
    out: list[Source] = []
    for s in sources:
        name = str(s)
        if name.startswith("hf:"):
            if not name[3:].split(":")[0]:
                raise ValueError(f"sources: {name!r} names no dataset (hf:NAME or hf:NAME:SPLIT)")
            out.append(Source(name, "hf"))
            continue
        if name.startswith("builtin:"):
            if name not in BUILTIN:
                raise ValueError(f"sources: unknown builtin corpus {name!r}; the embedded ones are {list(BUILTIN)}")
            out.append(Source(name, name))
            continue
        p = Path(name).expanduser()
        if not p.exists():
            raise ValueError(f"sources: {name!r} does not exist")
        if p.is_dir():
            files = sorted(
                (f for f in p.rglob("*") if f.is_file() and f.suffix in SUFFIXES),
                key=lambda f: f.relative_to(p).as_posix(),
            )
            if not files:
                raise ValueError(f"sources: the folder {name!r} holds no {'/'.join(SUFFIXES)} files")
            out.extend(_file_source(str(f), f) for f in files)
        else:
            out.append(_file_source(name, p))
    return out


def describe_builtin(kind: str) -> dict:
    """What a builtin corpus was made from, for meta.json (the interpreter it came from)."""
    if kind == "builtin:code":
        return {"stdlib": sysconfig.get_paths()["stdlib"], "python": sys.version.split()[0]}
    return {"module": "pydoc_data.topics", "python": sys.version.split()[0]}


def _file_source(name: str, p: Path) -> Source:
    if p.suffix in TEXT_SUFFIXES:
        return Source(name, "txt", p)
    if p.suffix in (".jsonl", ".json"):
        return Source(name, "json", p)
    if p.suffix == ".parquet":
        return Source(name, "parquet", p)
    raise ValueError(f"sources: {name!r} is not a {'/'.join(SUFFIXES)} file or a folder")


def _read_text(p: Path) -> str:
    text = _read_utf8(p)
    if text is None:
        raise ValueError(f"sources: {str(p)!r} is not UTF-8 text")
    return text


def _read_utf8(p: Path) -> str | None:
    try:
        return p.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return None


def _rows(source: Source, text_field: str) -> Iterator[str]:
    from datasets import load_dataset

    try:
        if source.kind == "hf":
            dataset, _, split = source.name[3:].partition(":")
            ds = load_dataset(dataset, split=split or "train", streaming=True)
        else:
            ds = load_dataset(source.kind, data_files=[str(source.path)], split="train", streaming=True)
        for i, row in enumerate(ds):
            if text_field not in row:
                raise ValueError(
                    f"text_field: {source.name!r} has no field {text_field!r} in row {i} "
                    f"(its fields: {sorted(row)})"
                )
            text = row[text_field]
            if text is None:
                text = ""
            if not isinstance(text, str):
                raise ValueError(
                    f"text_field: {source.name!r} row {i} field {text_field!r} is a " f"{type(text).__name__}, not text"
                )
            yield text
    except ValueError:
        raise
    except Exception as e:  # datasets/pyarrow parse errors: say which file
        raise ValueError(f"sources: cannot read {source.name!r} as {source.kind}: {type(e).__name__}: {e}") from e


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "pydoc_data", "__pycache__"}
    files = [p for p in root.rglob("*.py") if not skip.intersection(p.relative_to(root).parts) and p.is_file()]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _prose_topics() -> dict[str, str]:
    from pydoc_data.topics import topics

    seen: set[str] = set()
    out = {}
    for name in sorted(topics):
        if topics[name] not in seen:
            seen.add(topics[name])
            out[name] = topics[name]
    return out
