"""The ``genret`` command: build docid indexes, evaluate retrievers, inspect artifacts.

Each subcommand is a thin layer over the Python API (``indexing`` and ``genret``); heavy imports
happen inside the handlers so ``genret --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EPILOG = """examples:
  genret index --data ../shared/data/cranfield --scheme semantic --out indexes/cranfield-semantic
  genret inspect indexes/cranfield-semantic
  genret evaluate --retriever bm25 --data ../shared/data/scifact --run runs/bm25.trec
"""


def _add_index(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "index",
        help="assign docids to a corpus and build the docid trie into an artifact folder",
        description="Assign every document an identifier with a docid scheme, build the trie of valid "
        "identifiers, and write both as one verified artifact folder.",
    )
    p.add_argument("--data", required=True, help="BEIR folder, corpus .jsonl/.tsv/.csv/.parquet, or HF dataset name")
    p.add_argument("--scheme", required=True, help="atomic | naive | semantic | title | url")
    p.add_argument("--out", required=True, type=Path, help="artifact folder to write")
    p.add_argument(
        "--tokenizer",
        default="minilm",
        help="tokenizer the identifiers are encoded for: 'minilm' (offline default), a local folder "
        "with tokenizer.json, a hub name, or 'none' for a standalone docid vocabulary",
    )
    p.add_argument("--seed", type=int, help="seed (naive shuffled, semantic)")
    p.add_argument("--order", choices=["sequential", "shuffled"], help="naive: integer order")
    p.add_argument("--k", type=int, help="semantic: clusters per level (DSI 10, NCI 30)")
    p.add_argument("--c", type=int, help="semantic: most documents in a leaf (DSI 100, NCI 30)")
    p.add_argument("--encoder", help="semantic: 'auto', 'minilm', 'tfidf' or a sentence-transformers model")
    p.add_argument("--max-tokens", type=int, help="title/url: longest identifier in tokens")
    p.add_argument("--on-duplicate", choices=["error", "warn"], default="error", help="duplicate document ids")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.set_defaults(handler=cmd_index)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="run a retriever over a collection's queries and print metrics",
        description="Search every judged query of a split and evaluate the run with ir-measures.",
    )
    p.add_argument("--retriever", choices=["bm25"], default="bm25", help="which retriever to run")
    p.add_argument("--data", required=True, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
    p.add_argument("--split", default="test", help="qrels split (default: test)")
    p.add_argument("--k", type=int, default=100, help="documents retrieved per query")
    p.add_argument("--measures", nargs="+", help="ir-measures names (default: nDCG@10 R@1 R@10 R@100 RR@10)")
    p.add_argument("--stemmer", default=None, help="bm25: stemmer language, e.g. 'english' (needs PyStemmer)")
    p.add_argument("--run", type=Path, help="also write the run as a TREC file")
    p.add_argument("--json", type=Path, help="also write the metrics as JSON")
    p.set_defaults(handler=cmd_evaluate)


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="show what an artifact folder holds and verify every checksum",
        description="Print an artifact's kind, config, counts and files; exit 1 if it is damaged.",
    )
    p.add_argument("path", type=Path, help="artifact folder")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(handler=cmd_inspect)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genret",
        description="genret: generative retrieval. Build docid indexes, evaluate retrievers, inspect artifacts.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"genret {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_index(sub)
    _add_evaluate(sub)
    _add_inspect(sub)
    return parser


def _version() -> str:
    from indexing.artifacts import genret_version

    return genret_version()


def cmd_index(args: argparse.Namespace) -> int:
    from indexing.corpus import load_corpus
    from indexing.docids import make_scheme
    from indexing.index import build_index
    from indexing.tokenizer import load_tokenizer

    if args.out.exists() and not args.overwrite:
        raise SystemExit(f"genret index: {args.out} exists; pass --overwrite to replace it")
    options = {"seed": args.seed, "order": args.order, "k": args.k, "c": args.c,
               "encoder": args.encoder, "max_tokens": args.max_tokens}
    scheme = make_scheme(args.scheme, **{k: v for k, v in options.items() if v is not None})
    if hasattr(scheme, "progress"):
        scheme.progress = True  # embedding a corpus takes minutes on a CPU: show it
    tokenizer = None if args.tokenizer.lower() == "none" else load_tokenizer(args.tokenizer)
    corpus = load_corpus(args.data, on_duplicate=args.on_duplicate)
    print(f"loaded {len(corpus)} documents from {args.data}", file=sys.stderr)
    index = build_index(corpus, scheme, tokenizer, source=str(args.data))
    out = index.save(args.out, overwrite=args.overwrite)
    counts = index.counts()
    print(f"wrote {out}: {counts['documents']} documents, scheme {args.scheme}, "
          f"{counts['trie_nodes']} trie nodes, longest id {counts['max_id_length']} tokens")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from genret.evaluation import DEFAULT_MEASURES, evaluate, format_metrics, write_trec_run
    from genret.retrievers.bm25 import BM25Retriever
    from indexing.corpus import load_beir

    data = load_beir(args.data, split=args.split)
    retriever = BM25Retriever.index(data.corpus, stemmer=args.stemmer)
    run = retriever.search(data.queries, k=args.k)
    metrics = evaluate(run, data.qrels, tuple(args.measures) if args.measures else DEFAULT_MEASURES)
    print(f"{args.retriever} on {args.data} ({args.split}: {len(data.queries)} queries, "
          f"{len(data.corpus)} documents)")
    print(format_metrics(metrics))
    if args.run:
        args.run.parent.mkdir(parents=True, exist_ok=True)
        write_trec_run(run, args.run, tag=args.retriever)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(metrics, indent=2) + "\n")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from indexing.artifacts import ArtifactError, read_manifest

    try:
        manifest = read_manifest(args.path, verify=True)
    except ArtifactError as err:
        print(f"genret inspect: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
        return 0
    files = manifest["files"]
    print(f"{args.path}: {manifest['kind']} (format {manifest['format_version']}, "
          f"genret {manifest['genret_version']})")
    for key, value in manifest.get("config", {}).items():
        print(f"  {key}: {json.dumps(value, sort_keys=True)}")
    for key, value in manifest.get("counts", {}).items():
        print(f"  {key}: {value}")
    total = sum(info["size"] for info in files.values())
    print(f"  files: {len(files)}, {total / 1e6:.2f} MB")
    for name, info in files.items():
        print(f"    {name:32s} {info['size']:>12d} B  sha256 {info['sha256'][:12]}")
    print("OK: every file matches its size and sha256")
    return 0


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors caused by the input (bad files, damaged artifacts): shown as one message, no traceback."""
    from indexing.artifacts import ArtifactError
    from indexing.corpus import CorpusError
    from indexing.docids.base import DocidError

    return (ArtifactError, CorpusError, DocidError, FileNotFoundError, FileExistsError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except _user_errors() as err:
        print(f"genret {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
