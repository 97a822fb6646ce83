"""`statetrack data prepare|info`: tokenize text into token shards for pretraining, and describe a dataset."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "data",
        help="language-model data: tokenize text into token shards",
        description=__doc__.splitlines()[0].split(": ", 1)[1],
    )
    cmds = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")

    prep = cmds.add_parser(
        "prepare",
        help="tokenize local text (txt, jsonl, json, parquet, folders, builtin:code, builtin:prose) into shards",
        description="Tokenize documents into memory-mapped token shards with a held-out validation split. A .txt "
        "file is one document; .jsonl/.json/.parquet have one document per row (--text-field); a folder is every "
        "such file in it; builtin:code is the Python standard library's sources, builtin:prose the Python "
        "reference documentation (pydoc_data), both embedded. E.g. `statetrack data prepare builtin:code "
        "--tokenizer mistral-v1 --out data/stdlib`.",
    )
    prep.add_argument("sources", nargs="+", metavar="SRC", help="files, folders, builtin:code or builtin:prose")
    prep.add_argument("--tokenizer", required=True, help="mistral-v1, a tokenizer folder, tokenizer.json or .model")
    prep.add_argument("--out", required=True, help="dataset folder to create")
    prep.add_argument("--split-ratio", type=float, default=0.01, help="share of documents held out (default 0.01)")
    prep.add_argument("--workers", type=int, default=None, help="tokenizing processes (default: CPUs, at most 8)")
    prep.add_argument("--text-field", default="text", help="the document column of jsonl/json/parquet (text)")
    prep.add_argument("--max-documents", type=int, default=None, help="stop after this many documents")
    prep.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    prep.add_argument("--no-progress", action="store_true", help="no progress bar")
    prep.set_defaults(func=run_prepare)

    info = cmds.add_parser(
        "info",
        help="describe a prepared dataset",
        description="Print a dataset's meta.json "
        "summary: tokenizer, vocabulary, token and document counts per split, content hash.",
    )
    info.add_argument("dir", help="dataset folder (made by `statetrack data prepare`)")
    info.set_defaults(func=run_info)


def run_prepare(args) -> int:
    from statetrack.lm.data import prepare

    try:
        out = prepare(
            args.sources,
            args.tokenizer,
            args.out,
            split_ratio=args.split_ratio,
            workers=args.workers,
            text_field=args.text_field,
            max_documents=args.max_documents,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except ValueError as e:  # bad input: one line, no traceback
        raise SystemExit(_one_line(e)) from None
    except KeyboardInterrupt:
        raise SystemExit(f"statetrack data: interrupted; nothing written to {args.out}") from None
    _summary(out)
    return 0


def run_info(args) -> int:
    try:
        _summary(args.dir)
    except ValueError as e:
        raise SystemExit(_one_line(e)) from None
    return 0


def _one_line(e: Exception) -> str:
    return "statetrack data: " + " ".join(str(e).split())


def _summary(folder) -> None:
    from statetrack.lm.data_shards import read_meta

    m = read_meta(folder)
    print(
        f"{folder}: {m['documents']} documents, {m['tokens']} tokens ({m['dtype']}), tokenizer {m['tokenizer']} "
        f"(vocab_size {m['vocab_size']}), {m['content_hash']}"
    )
    for name, s in m["splits"].items():
        print(f"  {name}: {s['documents']} documents, {s['tokens']} tokens in {len(s['shards'])} shard(s)")
