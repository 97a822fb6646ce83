"""Helpers of the pretraining tests: a small prepared dataset of random documents, a tiny config, the losses of
a run folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from statetrack.lm.data_shards import (
    FORMAT,
    FORMAT_VERSION,
    SPLITS,
    ShardWriter,
    content_hash,
    token_dtype,
)

VOCAB = 64


def make_dataset(folder: Path, vocab_size: int = VOCAB, n_docs: int = 120, seed: int = 0, doc_len=(5, 60)) -> Path:
    """A prepared dataset of random documents (every 10th held out), in the format of statetrack.lm.data_shards."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    dtype = token_dtype(vocab_size)
    writers = {s: ShardWriter(folder, s, dtype, shard_tokens=max(2000, n_docs * doc_len[1] // 4)) for s in SPLITS}
    for i in range(n_docs):
        n = int(rng.integers(*doc_len))
        doc = np.concatenate([[1], rng.integers(3, vocab_size, n), [2]]).astype(dtype)
        writers["validation" if i % 10 == 0 else "train"].add(doc, np.array([len(doc)]))
    splits = {s: w.close() for s, w in writers.items()}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "tokenizer": "random", "vocab_size": vocab_size,
            "dtype": str(dtype), "content_hash": content_hash(dtype, splits), "splits": splits}  # fmt: skip
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def data_api():
    """The data module the engine reads (statetrack.lm.data)."""
    import statetrack.lm.data

    return statetrack.lm.data


TINY_MODEL = {"vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 2, "mixer": "deltanet",
              "mixer_settings": {"deltanet": {"n_heads": 2}}, "intermediate_size": 64}  # fmt: skip


def tiny_overrides(data: Path, out: Path, **train) -> list[str]:
    """Dot-list overrides for a tiny CPU run (a few ms per step)."""
    base = {"data": str(data), "out_dir": str(out), "steps": 8, "batch_size": 2, "seq_len": 32, "lr": 3e-3,
            "min_lr": 3e-4, "warmup_steps": 2, "log_every": 1, "ckpt_every": 3, "eval_every": 4, "eval_batches": 2,
            "device": "cpu", "threads": 1, "progress": False, "async_checkpoint": "off"}  # fmt: skip
    base.update(train)
    ov = [f"train.{k}={v}" for k, v in base.items()]
    ov += [f"model.{k}={json.dumps(v) if isinstance(v, dict) else v}" for k, v in TINY_MODEL.items()]
    return ov


def tiny_config(data: Path, out: Path, **train):
    from statetrack.lm.pretrain_config import load_pretrain_config

    return load_pretrain_config(None, tiny_overrides(data, out, **train))


def train_losses(out: Path) -> dict[int, float]:
    """{step: loss} of a run folder's metrics.jsonl (train lines)."""
    lines = (Path(out) / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"}
