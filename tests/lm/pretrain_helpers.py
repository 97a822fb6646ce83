"""Helpers of the pretraining tests: a small prepared dataset, a tiny config, and a stand-in for the packed
loader of statetrack.lm.data while that module is incomplete (same interface: PackedLoader, TokenShards,
check_data, prepare)."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import torch

from statetrack.lm.data_shards import (
    FORMAT,
    FORMAT_VERSION,
    SPLITS,
    ShardWriter,
    TokenShards,
    content_hash,
    token_dtype,
)

VOCAB = 64


def make_dataset(folder: Path, vocab_size: int = VOCAB, n_docs: int = 120, seed: int = 0) -> Path:
    """A prepared dataset of random documents (every 10th held out), in the format of statetrack.lm.data_shards."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    dtype = token_dtype(vocab_size)
    writers = {s: ShardWriter(folder, s, dtype, shard_tokens=2000) for s in SPLITS}
    for i in range(n_docs):
        n = int(rng.integers(5, 60))
        doc = np.concatenate([[1], rng.integers(3, vocab_size, n), [2]]).astype(dtype)
        writers["validation" if i % 10 == 0 else "train"].add(doc, np.array([len(doc)]))
    splits = {s: w.close() for s, w in writers.items()}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "tokenizer": "random", "vocab_size": vocab_size,
            "dtype": str(dtype), "content_hash": content_hash(dtype, splits), "splits": splits}  # fmt: skip
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


class PackedLoader:
    """Endless [B, T] rows of whole documents laid end to end (position_ids restart at each), batch i of rank r
    a function of (seed, i, r) only; state_dict() is the number of batches handed out."""

    def __init__(self, shards, batch_size, seq_len, *, rank=0, world_size=1, seed=0):
        self.shards, self.B, self.T, self.seed = shards, batch_size, seq_len, seed
        self.rank, self.world = rank, world_size
        self.batches = 0

    def _row(self, g: int):
        rng = np.random.default_rng([self.seed, g])
        ids, pos = [], []
        while len(ids) < self.T:
            d = self.shards.document(int(rng.integers(self.shards.documents))).astype(np.int64)
            ids.extend(d.tolist())
            pos.extend(range(len(d)))
        return ids[: self.T], pos[: self.T]

    def _batch(self, i: int) -> dict:
        rows = [self._row((i * self.world + self.rank) * self.B + j) for j in range(self.B)]
        ids = torch.tensor([r[0] for r in rows])
        return {"input_ids": ids, "labels": ids.clone(), "position_ids": torch.tensor([r[1] for r in rows])}

    def __iter__(self):
        while True:
            b = self._batch(self.batches)
            self.batches += 1
            yield b

    def state_dict(self) -> dict:
        return {"batches": self.batches}

    def load_state_dict(self, st: dict) -> None:
        self.batches = int(st["batches"])


def _check_data(dir, vocab_size, seq_len, *, max_seq_len=None, batch_size=1, world_size=1, splits=("train",)):
    from statetrack.lm.data_shards import read_meta

    if max_seq_len is not None and seq_len > max_seq_len:
        raise ValueError(f"seq_len={seq_len} is above what the config allows (max_seq_len={max_seq_len})")
    meta = read_meta(dir)
    if meta["vocab_size"] > vocab_size:
        raise ValueError(f"vocab_size: data has {meta['vocab_size']} tokens, the model's vocab_size is {vocab_size}")
    for s in splits:
        if len(TokenShards(dir, s)) < seq_len * batch_size * world_size:
            raise ValueError(f"split {s!r} is too small")
    return meta


def _prepare(*a, **k):
    raise ValueError("the stand-in data module has no builtin corpora")


def data_api():
    """statetrack.lm.data when its loader has landed, else the stand-in above."""
    try:
        import statetrack.lm.data as real

        return real
    except ImportError:
        return types.SimpleNamespace(TokenShards=TokenShards, PackedLoader=PackedLoader, check_data=_check_data,
                                     prepare=_prepare)  # fmt: skip


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
