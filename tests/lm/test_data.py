"""statetrack.lm.data: prepare (round trip, splits, atomic write, workers), the embedded corpora, TokenShards,
PackedLoader (packing rule, ranks, resume, seeds), check_data and the `statetrack data` command's errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from statetrack.lm import data as D
from statetrack.lm.data_shards import ShardWriter
from statetrack.lm.data_sources import Source, resolve_sources
from tests.lm.tiny import tiny_tokenizer

TINY_DOCS = [
    "the cat sat on the mat .",
    "the dog sat on the log .",
    "a cat and a dog .",
    "the cat sat .",
    "a dog sat on a log . the mat .",
    "the log .",
    "a cat sat on the dog . a dog sat on the cat .",
]


class NumberTokenizer:
    """Text "3 17 4" -> ids [3, 17, 4]: every token of a test corpus can be told apart. EOS is 0, no BOS."""

    bos_token_id = None
    eos_token_id = 0
    name_or_path = "numbers"

    def __init__(self, vocab_size: int = 60000):
        self.vocab_size = vocab_size

    def __len__(self) -> int:
        return self.vocab_size

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[int(w) for w in t.split()] for t in texts]}


def number_corpus(tmp_path: Path, lengths, name="numbers") -> Path:
    """A jsonl of documents with distinct ids 1, 2, 3, ... (lengths without the EOS), prepared with no split."""
    src = tmp_path / f"{name}.jsonl"
    nxt = 1
    with open(src, "w") as f:
        for n in lengths:
            f.write(json.dumps({"text": " ".join(str(i) for i in range(nxt, nxt + n))}) + "\n")
            nxt += n
    return D.prepare(src, NumberTokenizer(), tmp_path / name, split_ratio=0, workers=1, progress=False)


@pytest.fixture(scope="module")
def tiny():
    return tiny_tokenizer()


@pytest.fixture
def mixed_sources(tmp_path):
    """TINY_DOCS spread over a txt file, a jsonl (with an empty row), a parquet and a json array."""
    import pandas as pd

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text(TINY_DOCS[0])
    with open(tmp_path / "src" / "b.jsonl", "w") as f:
        for t in [TINY_DOCS[1], "", TINY_DOCS[2]]:
            f.write(json.dumps({"text": t, "id": 1}) + "\n")
    pd.DataFrame({"text": TINY_DOCS[3:5], "n": [1, 2]}).to_parquet(tmp_path / "src" / "c.parquet")
    (tmp_path / "src" / "d.json").write_text(json.dumps([{"text": t} for t in TINY_DOCS[5:]]))
    (tmp_path / "src" / "ignored.csv").write_text("not read")
    return tmp_path / "src"


def all_docs(out: Path) -> list[np.ndarray]:
    docs = []
    for split in ("train", "validation"):
        try:
            s = D.TokenShards(out, split)
        except ValueError:
            continue
        docs += [np.asarray(s.document(i)) for i in range(s.documents)]
    return docs


# --- prepare ---


def test_round_trip_txt_jsonl_parquet_json(tmp_path, mixed_sources, tiny):
    out = D.prepare([mixed_sources], tiny, tmp_path / "out", split_ratio=0, workers=1, progress=False)
    shards = D.TokenShards(out)
    assert shards.documents == len(TINY_DOCS)  # the empty jsonl row is skipped; the csv is not a source
    assert shards.dtype == np.uint16 and shards.vocab_size == len(tiny)
    assert len(shards) == sum(len(shards.document(i)) for i in range(shards.documents))
    for i, text in enumerate(TINY_DOCS):  # folder order: a.txt, b.jsonl, c.parquet, d.json
        doc = shards.document(i)
        assert doc[0] == tiny.bos_token_id and doc[-1] == tiny.eos_token_id
        assert tiny.eos_token_id not in doc[:-1].tolist()
        assert tiny.decode(doc[1:-1].tolist()) == text
    meta = shards.meta
    assert meta["documents"] == len(TINY_DOCS) and meta["tokens"] == len(shards)
    assert meta["dtype"] == "uint16" and meta["statetrack_version"] and meta["content_hash"].startswith("sha256:")
    assert [s["documents"] for s in meta["sources"]] == [1, 2, 2, 2]


def test_split_sizes_follow_the_held_out_rule(tmp_path):
    out = number_corpus(tmp_path, [3] * 50)
    assert "validation" in D.TokenShards(out).meta["splits"]
    with pytest.raises(ValueError, match="validation.*empty"):
        D.TokenShards(out, "validation")  # split_ratio=0: nothing held out
    for ratio in (0.01, 0.1, 0.3):
        o = D.prepare(tmp_path / "numbers.jsonl", NumberTokenizer(), tmp_path / f"r{ratio}", split_ratio=ratio,
                      workers=1, progress=False)  # fmt: skip
        train, val = D.TokenShards(o, "train"), D.TokenShards(o, "validation")
        assert val.documents == math.ceil(50 * ratio) and train.documents + val.documents == 50
        held = [int(val.document(i)[0]) // 3 for i in range(val.documents)]  # first id 3 d + 1 -> document d
        assert held == [i for i in range(50) if math.ceil((i + 1) * ratio) > math.ceil(i * ratio)]
        assert held[0] == 0 and (len(held) < 2 or held[1] == round(1 / ratio))


def test_uint32_for_a_large_vocab(tmp_path):
    src = tmp_path / "n.jsonl"
    src.write_text(json.dumps({"text": "1 69999 65536"}) + "\n")
    out = D.prepare(src, NumberTokenizer(70000), tmp_path / "o", split_ratio=0, workers=1, progress=False)
    s = D.TokenShards(out)
    assert s.dtype == np.uint32 and s.document(0).tolist() == [1, 69999, 65536, 0]


def test_atomic_write_leaves_nothing_after_a_failure(tmp_path, tiny, monkeypatch):
    srcs = []
    for i, t in enumerate(TINY_DOCS):
        (tmp_path / f"{i}.txt").write_text(t)
        srcs.append(tmp_path / f"{i}.txt")
    calls = {"n": 0}
    real = ShardWriter.add

    def failing_add(self, tokens, lengths):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return real(self, tokens, lengths)

    monkeypatch.setattr(D, "CHUNK_DOCS", 1)  # one document per chunk: the failure comes mid-way
    monkeypatch.setattr(ShardWriter, "add", failing_add)
    before = set(tmp_path.iterdir())
    with pytest.raises(RuntimeError, match="disk full"):
        D.prepare(srcs, tiny, tmp_path / "out", workers=1, progress=False)
    assert calls["n"] == 3
    assert set(tmp_path.iterdir()) == before  # no out dir, no temporary folder


def test_existing_out_dir_refused_unless_overwrite(tmp_path, tiny):
    (tmp_path / "a.txt").write_text(TINY_DOCS[0])
    (tmp_path / "b.txt").write_text(TINY_DOCS[1])
    out = D.prepare([tmp_path / "a.txt"], tiny, tmp_path / "out", split_ratio=0, workers=1, progress=False)
    with pytest.raises(ValueError, match="out_dir.*exists"):
        D.prepare([tmp_path / "b.txt"], tiny, out, split_ratio=0, workers=1, progress=False)
    D.prepare([tmp_path / "b.txt"], tiny, out, split_ratio=0, workers=1, progress=False, overwrite=True)
    assert tiny.decode(D.TokenShards(out).document(0)[1:-1].tolist()) == TINY_DOCS[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "out"]


@pytest.mark.slow  # two spawned processes import transformers: ~20 s on 2 shared cores
def test_workers_and_shard_size_do_not_change_the_content(tmp_path, mixed_sources, tiny, monkeypatch):
    monkeypatch.setattr(D, "CHUNK_DOCS", 2)  # several tasks for the pool
    one = D.prepare([mixed_sources], tiny, tmp_path / "one", workers=1, progress=False)
    two = D.prepare([mixed_sources], tiny, tmp_path / "two", workers=2, progress=False, shard_tokens=10)
    m1, m2 = D.TokenShards(one).meta, D.TokenShards(two).meta
    assert len(m2["splits"]["train"]["shards"]) > 1
    assert m1["content_hash"] == m2["content_hash"]
    assert [d.tolist() for d in all_docs(one)] == [d.tolist() for d in all_docs(two)]


def test_max_documents(tmp_path, mixed_sources, tiny):
    out = D.prepare([mixed_sources], tiny, tmp_path / "o", split_ratio=0, workers=1, progress=False, max_documents=3)
    s = D.TokenShards(out)
    assert s.documents == 3 and tiny.decode(s.document(2)[1:-1].tolist()) == TINY_DOCS[2]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: [p / "missing.txt"], "sources: .*missing.txt.* does not exist"),
        (lambda p: [p / "empty.txt"], "sources: no documents"),
        (lambda p: [p / "empty_dir"], "empty_dir.* holds no"),
        (lambda p: [p / "x.csv"], "x.csv.* is not a"),
        (lambda p: ["builtin:poetry"], "unknown builtin corpus 'builtin:poetry'"),
        (lambda p: [p / "nofield.jsonl"], "text_field: .*nofield.jsonl.* has no field 'text'"),
        (lambda p: [], "sources: give at least one"),
        (lambda p: ["hf:"], "names no dataset"),
    ],
)
def test_bad_sources_name_the_argument(tmp_path, tiny, make, match):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "x.csv").write_text("a,b")
    (tmp_path / "nofield.jsonl").write_text(json.dumps({"body": "the cat"}) + "\n")
    with pytest.raises(ValueError, match=match):
        D.prepare(make(tmp_path), tiny, tmp_path / "out", workers=1, progress=False)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_bad_arguments_name_the_argument(tmp_path, tiny):
    (tmp_path / "a.txt").write_text(TINY_DOCS[0])
    src = [tmp_path / "a.txt"]
    with pytest.raises(ValueError, match="tokenizer: 'no-such-tokenizer'"):
        D.prepare(src, "no-such-tokenizer", tmp_path / "o", progress=False)
    with pytest.raises(ValueError, match="split_ratio"):
        D.prepare(src, tiny, tmp_path / "o", split_ratio=1.5, progress=False)
    with pytest.raises(ValueError, match="workers"):
        D.prepare(src, tiny, tmp_path / "o", workers=0, progress=False)
    with pytest.raises(ValueError, match="holds out all 1 document"):
        D.prepare(src, tiny, tmp_path / "o", split_ratio=0.5, workers=1, progress=False)
    (tmp_path / "r.jsonl").write_text(json.dumps({"text": "the cat"}) + "\n")
    with pytest.raises(ValueError, match="text_field: .*r.jsonl.* has no field 'body'"):
        D.prepare([tmp_path / "r.jsonl"], tiny, tmp_path / "o", text_field="body", progress=False, workers=1)
    with pytest.raises(ValueError, match="tokenizer must be"):
        D.prepare(src, object(), tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()


# --- the embedded corpora ---


def test_builtin_corpora_are_deterministic_and_disjoint(tmp_path, tiny):
    code, prose = resolve_sources(["builtin:code", "builtin:prose"])
    from pydoc_data.topics import topics

    prose_docs = list(prose.documents())
    assert len(prose_docs) == len(set(topics.values())) > 50 and sorted(topics)[0] in prose_docs[0].lower()
    assert all(isinstance(t, str) for _, t in zip(range(5), code.documents(), strict=False))
    from statetrack.lm.data_sources import _stdlib_files

    files = _stdlib_files()
    assert files == sorted(files, key=lambda p: p.as_posix()) and not any("pydoc_data" in p.parts for p in files)
    assert not any("site-packages" in p.parts for p in files) and len(files) > 500
    hashes = []
    for name in ("a", "b"):
        out = D.prepare(["builtin:code", "builtin:prose"], tiny, tmp_path / name, split_ratio=0.2, workers=1,
                        progress=False, max_documents=12)  # fmt: skip
        meta = D.TokenShards(out).meta
        hashes.append(meta["content_hash"])
        assert meta["documents"] == 12 and meta["sources"][0]["source"] == "builtin:code"
        assert meta["sources"][0]["python"] and D.TokenShards(out, "validation").documents == 3
    assert hashes[0] == hashes[1]
    out = D.prepare(["builtin:prose"], tiny, tmp_path / "p", split_ratio=0.1, workers=1, progress=False)
    assert D.TokenShards(out).documents + D.TokenShards(out, "validation").documents == len(prose_docs)


def test_source_counts_match_what_they_yield(mixed_sources):
    for src in resolve_sources([mixed_sources]):
        n = src.count()
        assert n is None or n == len(list(src.documents()))
    assert Source("x", "builtin:prose").count() == len(list(Source("x", "builtin:prose").documents()))


# --- the loader ---


def segments(ids: torch.Tensor, pos: torch.Tensor):
    """A row cut where position_ids is 0: [(start, stop)]."""
    starts = (pos == 0).nonzero().flatten().tolist()
    assert starts and starts[0] == 0, "every row starts a segment"
    return list(zip(starts, starts[1:] + [len(pos)], strict=False))


@pytest.mark.parametrize("seq_len", [1, 5, 16, 40])
def test_rows_are_whole_or_continued_documents(tmp_path, seq_len):
    lengths = [1, 7, 3, 30, 2, 11, 5, 19, 4, 9]  # + EOS each
    out = number_corpus(tmp_path, lengths)
    shards = D.TokenShards(out)
    docs = [shards.document(i).tolist() for i in range(shards.documents)]
    where = {tok: (d, j) for d, doc in enumerate(docs) for j, tok in enumerate(doc) if tok != 0}
    loader = D.PackedLoader(shards, batch_size=2, seq_len=seq_len, seed=3)
    seen = []
    for _ in range(loader.batches_per_epoch):
        b = next(loader)
        assert set(b) == {"input_ids", "labels", "position_ids"}
        assert all(v.dtype == torch.long and v.shape == (2, seq_len) for v in b.values())
        assert torch.equal(b["labels"], b["input_ids"])
        for ids, pos in zip(b["input_ids"], b["position_ids"], strict=False):
            for lo, hi in segments(ids, pos):
                seg = ids[lo:hi].tolist()
                assert pos[lo:hi].tolist() == list(range(hi - lo))
                first = next(t for t in seg if t != 0) if any(seg) else None
                d, j = where[first] if first is not None else (None, None)
                if first is None:  # a lone EOS: the end of a document continued into this row
                    assert seg == [0] and lo == 0
                    continue
                start = j - seg.index(first)
                assert docs[d][start : start + len(seg)] == seg  # a contiguous piece of one document
                if lo > 0:
                    assert start == 0  # a segment inside a row starts its document
                if hi < seq_len:
                    assert start + len(seg) == len(docs[d])  # ... and one that ends inside a row ends it
                seen += [t for t in seg if t != 0]
    assert len(seen) == len(set(seen))  # no token twice in an epoch
    assert loader.epoch == 1 and loader.batch == 0


def test_unshuffled_rows_are_the_stream_in_order(tmp_path):
    out = number_corpus(tmp_path, [4, 9, 2, 6, 13, 1, 8])
    shards = D.TokenShards(out)
    stream = np.concatenate([shards.document(i) for i in range(shards.documents)])
    loader = D.PackedLoader(shards, batch_size=1, seq_len=6, shuffle=False)
    rows = torch.cat([next(loader)["input_ids"] for _ in range(loader.batches_per_epoch)]).reshape(-1)
    assert loader.batches_per_epoch == len(stream) // 6
    assert rows.tolist() == stream[: len(rows)].tolist()


def test_ranks_are_disjoint_and_together_make_one_rank(tmp_path):
    out = number_corpus(tmp_path, [5, 17, 3, 8, 40, 2, 11, 6, 9, 14, 1, 22])
    shards = D.TokenShards(out)
    one = D.PackedLoader(shards, batch_size=4, seq_len=8, seed=7)
    ranks = [D.PackedLoader(shards, batch_size=2, seq_len=8, seed=7, rank=r, world_size=2) for r in range(2)]
    assert one.batches_per_epoch == ranks[0].batches_per_epoch
    toks = [set(), set()]
    for _ in range(one.batches_per_epoch + 2):  # into the second epoch
        whole, parts = next(one), [next(r) for r in ranks]
        for k in whole:
            assert torch.equal(whole[k], torch.cat([parts[0][k], parts[1][k]]))
        if ranks[0].epoch == 0 and ranks[0].batch > 0:
            for r in range(2):
                toks[r] |= set(parts[r]["input_ids"].flatten().tolist()) - {0}
    assert toks[0] and toks[1] and not toks[0] & toks[1]


@pytest.mark.parametrize("k", [0, 3, 7, 11])
def test_resume_gives_the_same_batches(tmp_path, k):
    out = number_corpus(tmp_path, [5, 17, 3, 8, 40, 2, 11, 6, 9, 14, 1, 22])
    shards = D.TokenShards(out)
    ref = D.PackedLoader(shards, batch_size=2, seq_len=7, seed=5, rank=1, world_size=2)
    assert ref.batches_per_epoch == 5  # k = 7, 11 resume in later epochs
    for _ in range(k):
        next(ref)
    state = json.loads(json.dumps(ref.state_dict()))  # it survives a checkpoint as plain data
    expected = [next(ref) for _ in range(8)]
    new = D.PackedLoader(D.TokenShards(out), batch_size=2, seq_len=7, seed=5, rank=1, world_size=2)
    new.load_state_dict(state)
    for e, g in zip(expected, (next(new) for _ in range(8)), strict=False):
        assert all(torch.equal(e[key], g[key]) for key in e)
    # the same global batch over one rank: rank 1's rows are the second half
    solo = D.PackedLoader(shards, batch_size=4, seq_len=7, seed=5)
    solo.load_state_dict(state)
    assert torch.equal(next(solo)["input_ids"][2:], expected[0]["input_ids"])


@pytest.mark.parametrize("k", [0, 3, 4, 7])
def test_resume_with_another_global_batch_continues_in_rows(tmp_path, k):
    """A training step of 4 rows as one batch of 4 (one rank, or 2 ranks of 2) or as 2 micro-batches of 2
    (grad_accum 2): resumed either way, the next step reads the same rows."""
    out = number_corpus(tmp_path, [5, 17, 3, 8, 40, 2, 11, 6, 9, 14, 1, 22])
    four = D.PackedLoader(D.TokenShards(out), batch_size=4, seq_len=7, seed=5)
    assert four.batches_per_epoch == 5  # k = 7 resumes in the second epoch, k = 4 at the first one's last batch
    for _ in range(k):
        next(four)
    state = json.loads(json.dumps(four.state_dict()))
    want = next(four)["input_ids"]
    two = D.PackedLoader(D.TokenShards(out), batch_size=2, seq_len=7, seed=5)
    two.load_state_dict(state)
    assert (two.epoch, two.batch) == (k // 5, 2 * (k % 5))
    assert torch.equal(torch.cat([next(two)["input_ids"], next(two)["input_ids"]]), want)
    back = D.PackedLoader(D.TokenShards(out), batch_size=4, seq_len=7, seed=5)  # and back to batches of 4
    back.load_state_dict(two.state_dict())
    assert (back.epoch, back.batch) == ((k + 1) // 5, (k + 1) % 5)
    # where only the 4-row loader's dropped tail is left of an epoch, the next epoch begins
    one = D.PackedLoader(D.TokenShards(out), batch_size=1, seq_len=7, seed=5)
    assert one.batches_per_epoch == 21  # its row 20 is in the 4-row loader's dropped tail
    back.load_state_dict({**one.state_dict(), "epoch": 0, "batch": 20})
    assert (back.epoch, back.batch) == (1, 0)


def test_resume_refuses_another_setup(tmp_path):
    out = number_corpus(tmp_path, [5, 17, 3, 8, 40, 2, 11])
    shards = D.TokenShards(out)
    state = D.PackedLoader(shards, 2, 8, seed=1).state_dict()
    for kwargs, key in [({"seed": 2}, "seed"), ({"seq_len": 4}, "seq_len")]:
        args = {"batch_size": 2, "seq_len": 8, "seed": 1, **kwargs}
        with pytest.raises(ValueError, match=f"loader state: {key}"):
            D.PackedLoader(shards, args.pop("batch_size"), args.pop("seq_len"), **args).load_state_dict(state)
    # 2 rows into the epoch: no batch boundary of 4 rows there
    with pytest.raises(ValueError, match=r"loader state: global_rows is 2 there but 4 here.*batch 1 x 2"):
        D.PackedLoader(shards, 4, 8, seed=1).load_state_dict({**state, "batch": 1})
    with pytest.raises(ValueError, match="content_hash"):
        other = number_corpus(tmp_path, [5, 17, 3, 8, 40, 2, 12], name="other")
        D.PackedLoader(D.TokenShards(other), 2, 8, seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="batch 99"):
        D.PackedLoader(shards, 2, 8, seed=1).load_state_dict({**state, "batch": 99})
    for key in ("epoch", "global_rows"):  # a state that is no state_dict() of a loader
        with pytest.raises(ValueError, match=f"loader state: no '{key}'"):
            D.PackedLoader(shards, 2, 8, seed=1).load_state_dict({k: v for k, v in state.items() if k != key})


def test_seed_determines_the_batches(tmp_path):
    out = number_corpus(tmp_path, [5, 17, 3, 8, 40, 2, 11, 6, 9, 14, 1, 22])
    shards = D.TokenShards(out)

    def run(seed, n=6):
        loader = D.PackedLoader(shards, 2, 8, seed=seed)
        return [next(loader)["input_ids"] for _ in range(n)]

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=False))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=False))
    loader = D.PackedLoader(shards, 2, 8, seed=0)
    epochs = [[next(loader)["input_ids"] for _ in range(loader.batches_per_epoch)] for _ in range(2)]
    assert not all(torch.equal(x, y) for x, y in zip(*epochs, strict=False))  # a new order each epoch


def test_loader_bad_arguments(tmp_path):
    shards = D.TokenShards(number_corpus(tmp_path, [5, 17, 3]))
    for kwargs, match in [
        ({"batch_size": 0}, "batch_size"),
        ({"seq_len": -1}, "seq_len"),
        ({"rank": 2, "world_size": 2}, "rank"),
        ({"world_size": 0}, "world_size"),
        ({"seq_len": 1000}, "fewer than one global batch"),
    ]:
        args = {"batch_size": 1, "seq_len": 4, **kwargs}
        with pytest.raises(ValueError, match=match):
            D.PackedLoader(shards, args.pop("batch_size"), args.pop("seq_len"), **args)
    with pytest.raises(TypeError, match="shards"):
        D.PackedLoader(str(tmp_path), 1, 4)


# --- check_data and corrupt data ---


def test_check_data(tmp_path):
    out = number_corpus(tmp_path, [5, 17, 3, 8])
    assert D.check_data(out, vocab_size=60000, seq_len=8)["vocab_size"] == 60000
    with pytest.raises(ValueError, match="vocab_size: .*60000 tokens.* model's vocab_size is 32000"):
        D.check_data(out, vocab_size=32000, seq_len=8)
    with pytest.raises(ValueError, match="seq_len=4096 is above what the config allows"):
        D.check_data(out, 60000, 4096, max_seq_len=2048)
    with pytest.raises(ValueError, match="fewer than one batch"):
        D.check_data(out, 60000, 16, batch_size=4)
    with pytest.raises(ValueError, match="data: .*nowhere.* is not a folder"):
        D.check_data(tmp_path / "nowhere", 60000, 8)
    with pytest.raises(ValueError, match="has no meta.json"):
        D.check_data(tmp_path, 60000, 8)
    with pytest.raises(ValueError, match="split 'validation'|'validation'.*empty"):
        D.check_data(out, 60000, 8, splits=("train", "validation"))


def test_corrupt_shards_are_named(tmp_path):
    out = number_corpus(tmp_path, [5, 17, 3, 8])
    shard = out / "train" / "tokens-00000.bin"
    data = shard.read_bytes()
    shard.write_bytes(data[:-2])
    with pytest.raises(ValueError, match="tokens-00000.bin.*truncated"):
        D.check_data(out, 60000, 8)
    shard.write_bytes(b"")
    with pytest.raises(ValueError, match="tokens-00000.bin.* is empty"):
        D.TokenShards(out)
    shard.unlink()
    with pytest.raises(ValueError, match="tokens-00000.bin.* is missing"):
        D.TokenShards(out)


# --- the command line ---


def test_cli_prepare_and_one_line_errors(tmp_path, tiny, capsys):
    from statetrack.cli import main

    tok_dir = tmp_path / "tok"
    tiny.save_pretrained(tok_dir)
    (tmp_path / "a.txt").write_text(TINY_DOCS[0])
    (tmp_path / "b.txt").write_text(TINY_DOCS[1])
    args = ["data", "prepare", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), "--tokenizer", str(tok_dir)]
    assert main([*args, "--out", str(tmp_path / "out"), "--workers", "1", "--split-ratio", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "2 documents" in printed and str(tmp_path / "out") in printed
    assert D.TokenShards(tmp_path / "out", "validation").documents == 1
    assert main(["data", "info", str(tmp_path / "out")]) == 0
    assert "validation" in capsys.readouterr().out
    for argv, named in [
        (["data", "prepare", str(tmp_path / "nope.txt"), "--tokenizer", str(tok_dir), "--out", str(tmp_path / "o")],
         "nope.txt"),
        ([*args, "--out", str(tmp_path / "out")], "exists"),
        (["data", "prepare", str(tmp_path / "a.txt"), "--tokenizer", "nonesuch", "--out", str(tmp_path / "o")],
         "nonesuch"),
        (["data", "info", str(tmp_path / "nowhere")], "nowhere"),
    ]:  # fmt: skip
        with pytest.raises(SystemExit) as e:
            main(argv)
        msg = str(e.value.code)
        assert msg.startswith("statetrack data: ") and "\n" not in msg and named in msg


def test_hub_source_without_network_is_a_one_line_value_error(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no cache of it either
    with pytest.raises(ValueError, match="cannot read 'hf:nobody/no-such-dataset'"):
        D.prepare(["hf:nobody/no-such-dataset"], tiny, tmp_path / "o", workers=1, progress=False)
    assert not (tmp_path / "o").exists()
