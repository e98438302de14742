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
  genret quickstart
  genret run dsi-scifact docids.scheme=atomic output_dir=runs/scifact-atomic
  genret search --index runs/quickstart/retriever "how do bees make honey"
  genret evaluate --index runs/quickstart/retriever --data minicorpus
  genret index --data ../shared/data/cranfield --scheme semantic --out indexes/cranfield-semantic
  genret inspect indexes/cranfield-semantic
  genret evaluate --retriever bm25 --data ../shared/data/scifact --run runs/bm25.trec
  genret scale scaling-shared corpus=[scifact] sizes=[1000,2000] budget.max_steps=30 output_dir=runs/scaling
  genret scale --report runs/scaling

exit status: 0 done; 2 bad input (a file, option, recipe or artifact that cannot be used: one line says which and
why); 3 a check that ran and failed (inspect found a damaged artifact, run --check missed an expected figure);
1 anything else, which is a bug (a traceback is printed): please report it.
"""
EXIT_OK, EXIT_BUG, EXIT_USER_ERROR, EXIT_CHECK_FAILED = 0, 1, 2, 3


class UsageError(ValueError):
    """Options that cannot go together or are missing: exit 2 with the message, like argparse's own."""


def _positive(text: str) -> int:
    """argparse type: an integer >= 1 (a refusal here exits 2 with the option named)."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _measure(text: str) -> str:
    """argparse type: an ir-measures name, checked before anything is searched."""
    from genret.evaluation import parse_measures

    try:
        parse_measures([text])
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _add_index(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "index",
        help="assign docids to a corpus and build the docid trie into an artifact folder",
        description="Assign every document an identifier with a docid scheme, build the trie of valid "
        "identifiers, and write both as one verified artifact folder.",
    )
    p.add_argument("--data", required=True, help="BEIR folder, corpus .jsonl/.tsv/.csv/.parquet, or HF dataset name")
    p.add_argument("--scheme", required=True,
                   help="atomic | naive | semantic | title | url, or ngram: every n-gram of the corpus is an "
                   "identifier (SEAL; the same as `genret ngrams`)")
    p.add_argument("--backend", choices=["sa", "fm"], default=None,
                   help="ngram: sa (suffix array, fastest) or fm (compressed FM-index); default sa")
    p.add_argument("--title-markers", type=_non_negative, nargs=2, metavar=("BEGIN", "END"), default=None,
                   help="ngram: token ids around each title (the title view; MiniLM: 1 2)")
    p.add_argument("--shard-tokens", type=_positive, default=None, help="ngram: most tokens per shard (default 2**30)")
    p.add_argument("--out", required=True, type=Path, help="artifact folder to write")
    p.add_argument(
        "--tokenizer",
        default="minilm",
        help="tokenizer the identifiers are encoded for: 'minilm' (offline default), a local folder "
        "with tokenizer.json, a hub name, or 'none' for a standalone docid vocabulary",
    )
    p.add_argument("--seed", type=_non_negative, help="seed (naive shuffled, semantic)")
    p.add_argument("--order", choices=["sequential", "shuffled"], help="naive: integer order")
    p.add_argument("--k", type=_positive, help="semantic: clusters per level (DSI 10, NCI 30)")
    p.add_argument("--c", type=_positive, help="semantic: most documents in a leaf (DSI 100, NCI 30)")
    p.add_argument("--encoder", help="semantic: 'auto', 'minilm', 'tfidf' or a sentence-transformers model")
    p.add_argument("--max-tokens", type=_positive, help="title/url: longest identifier in tokens")
    p.add_argument("--on-duplicate", choices=["error", "warn"], default="error", help="duplicate document ids")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.set_defaults(handler=cmd_index)


def _add_ngrams(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ngrams",
        help="build the n-gram index of a corpus (SEAL's identifiers) into an artifact folder",
        description="Tokenize every document and index all its n-grams (suffix array or compressed FM-index), "
        "written as one verified artifact folder that loads memory-mapped.",
    )
    p.add_argument("--data", required=True, help="BEIR folder, corpus .jsonl/.tsv/.csv/.parquet, or HF dataset name")
    p.add_argument("--out", required=True, type=Path, help="artifact folder to write")
    p.add_argument("--backend", choices=["sa", "fm"], default="sa",
                   help="sa: suffix array (fastest, ~6 bytes/token); fm: compressed FM-index (~2.4 bytes/token)")
    p.add_argument("--tokenizer", default="minilm", help="'minilm' (offline default), a local folder or a hub name")
    p.add_argument("--title-markers", type=_non_negative, nargs=2, metavar=("BEGIN", "END"), default=None,
                   help="token ids around each title (the title view; MiniLM: 1 2); default: title and text "
                   "indexed as one text")
    p.add_argument("--shard-tokens", type=_positive, default=None, help="most tokens per shard (default 2**30)")
    p.add_argument("--on-duplicate", choices=["error", "warn"], default="error", help="duplicate document ids")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.set_defaults(handler=cmd_ngrams)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="run a retriever over a collection's queries and print metrics",
        description="Search every judged query of a split and evaluate the run with ir-measures.",
    )
    from genret.retrievers.baselines import BASELINES
    from genret.systems import SYSTEMS

    p.add_argument("--retriever", choices=[*BASELINES, *SYSTEMS], default=None,
                   help="which retriever to run (default: the trained one with --index, else bm25)")
    p.add_argument("--index", type=Path, help="a trained retriever folder (genret train / run): evaluates it")
    p.add_argument("--data", required=True,
                   help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) or 'minicorpus'")
    p.add_argument("--split", default="test", help="qrels split (default: test)")
    p.add_argument("--allow-other-corpus", action="store_true",
                   help="evaluate an --index built on another corpus than --data (refused by default)")
    p.add_argument("--on-duplicate", choices=["error", "warn"], default="error", help="duplicate document ids")
    p.add_argument("--k", type=_positive, default=100, help="documents retrieved per query")
    p.add_argument("--measures", nargs="+", type=_measure,
                   help="ir-measures names (default: nDCG@10 R@1 R@10 R@100 RR@10)")
    p.add_argument("--stemmer", default=None, help="bm25: stemmer language, e.g. 'english' (needs PyStemmer)")
    p.add_argument("--run", type=Path, help="also write the run as a TREC file")
    p.add_argument("--json", type=Path, help="also write the metrics as JSON")
    p.set_defaults(handler=cmd_evaluate)


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="show what an artifact folder holds and verify every checksum",
        description="Print an artifact's kind, config, counts and files; exit 3 if it is damaged.",
    )
    p.add_argument("path", type=Path, help="artifact folder")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(handler=cmd_inspect)


def _add_recipe_commands(sub: argparse._SubParsersAction) -> None:
    for name, help_, desc in [
        ("run", "index -> train -> evaluate a recipe, writing a result folder",
         "Run a recipe end to end: build the docid index, train the model, save the retriever, and evaluate "
         "it beside the baselines on the same queries. Writes OUTPUT_DIR/{retriever,train,runs,results.json}."),
        ("train", "index + train a recipe and save the retriever (no final evaluation)",
         "Build the docid index and train the model of a recipe; saves OUTPUT_DIR/retriever."),
    ]:
        p = sub.add_parser(name, help=help_, description=desc)
        p.add_argument("recipe", help="recipe YAML file, or the name of a packaged recipe (quickstart, dsi-scifact)")
        p.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. train.epochs=5")
        p.add_argument("--resume", action="store_true", help="continue from the latest training checkpoint")
        p.add_argument("--check", action="store_true", help="fail if metrics miss the recipe's `expected`")
        p.set_defaults(handler=cmd_run, evaluate_after=name == "run")
    p = sub.add_parser("quickstart", help="train and evaluate a small index of the embedded corpus (minutes, CPU)",
                       description="Runs the packaged quickstart recipe on the embedded minicorpus.")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. output_dir=runs/qs")
    p.add_argument("--resume", action="store_true", help="continue from the latest training checkpoint")
    p.add_argument("--check", action="store_true", help="fail if metrics miss the recipe's `expected`")
    p.set_defaults(handler=cmd_run, recipe="quickstart", evaluate_after=True)

    p = sub.add_parser("search", help="search a trained retriever with a query",
                       description="Print the top-k documents a trained retriever generates for each query.")
    p.add_argument("--index", type=Path, required=True, help="trained retriever folder")
    p.add_argument("queries", nargs="+", help="query text(s)")
    p.add_argument("-k", type=_positive, default=10, help="documents per query")
    p.add_argument("--data", help="the corpus, to show each hit's title or first words (default: the corpus the "
                                  "folder was built from, where it records one and it is still there)")
    p.set_defaults(handler=cmd_search)


def _add_scale(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scale",
        help="run a scaling sweep (quality or cost across corpus sizes), or redraw its report",
        description="Run every (corpus size, system) cell of a sweep recipe that OUTPUT_DIR/results.jsonl does not "
        "hold yet (a killed sweep resumes), then write results.md and the PNG figures beside it. The recipe's "
        "top-level `kind` picks the sweep: quality (default; real collections, nested subsets) or cost "
        "(synthetic corpora). --report DIR only redraws the table and figures from DIR/results.jsonl.",
    )
    p.add_argument("recipe", nargs="?", help="sweep recipe YAML, or a packaged name (scaling-shared)")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. sizes=[1000,2500] output_dir=DIR")
    p.add_argument("--report", type=Path, metavar="DIR", help="redraw the table and figures of DIR/results.jsonl")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    p.set_defaults(handler=cmd_scale)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genret",
        description="genret: generative retrieval. Index a corpus, train a model to memorize it, search, evaluate.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"genret {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_index(sub)
    _add_ngrams(sub)
    _add_evaluate(sub)
    _add_inspect(sub)
    _add_recipe_commands(sub)
    _add_scale(sub)
    return parser


def _version() -> str:
    from indexing.artifacts import genret_version

    return genret_version()


def cmd_index(args: argparse.Namespace) -> int:
    from indexing.artifacts import check_output
    from indexing.corpus import load_corpus
    from indexing.docid_index import build_index
    from indexing.docids import make_scheme
    from indexing.tokenizer import load_tokenizer

    if args.scheme == "ngram":  # SEAL's identifiers: an n-gram index, not docids
        docid_only = [f"--{name.replace('_', '-')}" for name in ("seed", "order", "k", "c", "encoder", "max_tokens")
                      if getattr(args, name) is not None]
        if docid_only:
            raise UsageError(f"{', '.join(docid_only)} do not apply to --scheme ngram")
        args.backend = args.backend or "sa"
        return cmd_ngrams(args)
    ngram_only = [flag for flag, value in (("--backend", args.backend), ("--title-markers", args.title_markers),
                                           ("--shard-tokens", args.shard_tokens)) if value is not None]
    if ngram_only:
        raise UsageError(f"{', '.join(ngram_only)} only apply to --scheme ngram")
    check_output(args.out, args.overwrite)  # before minutes of building, not after
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


def cmd_ngrams(args: argparse.Namespace) -> int:
    from indexing.artifacts import check_output
    from indexing.corpus import load_corpus
    from indexing.ngrams import NgramIndex
    from indexing.ngrams.ngram_index import DEFAULT_SHARD_TOKENS, check_title_markers
    from indexing.tokenizer import load_tokenizer

    check_output(args.out, args.overwrite)  # before minutes of building, not after
    markers = tuple(args.title_markers) if args.title_markers else None
    tokenizer = load_tokenizer(args.tokenizer)
    try:
        check_title_markers(markers, tokenizer.vocab_size)
    except ValueError as err:
        raise UsageError(f"--title-markers: {err}") from None
    corpus = load_corpus(args.data, on_duplicate=args.on_duplicate)
    print(f"loaded {len(corpus)} documents from {args.data}", file=sys.stderr)
    index = NgramIndex.build(corpus, tokenizer, backend=args.backend, title_markers=markers,
                             shard_tokens=args.shard_tokens or DEFAULT_SHARD_TOKENS)
    out = index.save(args.out, overwrite=args.overwrite)
    print(f"wrote {out}: {index.n_docs} documents, {index.n_tokens} tokens, {index.n_shards} shard(s), "
          f"backend {index.backend}, {index.nbytes() / max(index.n_tokens, 1):.2f} bytes/token")
    return 0


def _retriever(args: argparse.Namespace, corpus: object) -> object:
    from genret.retrievers.baselines import build_baseline
    from genret.systems import SYSTEMS

    if args.retriever in SYSTEMS:
        from genret.retrievers import load_retriever

        if args.index is None:
            raise UsageError(f"--retriever {args.retriever} needs --index DIR (a trained retriever "
                             f"folder)")
        return load_retriever(args.index)
    options = {"stemmer": args.stemmer} if args.retriever == "bm25" else {}
    return build_baseline(args.retriever, corpus, **options)


def _check_same_corpus(indexed: list[str], corpus_ids: list[str], args: argparse.Namespace) -> None:
    """A trained index scored against another corpus gives meaningless figures: refuse unless asked."""
    unindexed = set(corpus_ids).difference(indexed)
    foreign = set(indexed).difference(corpus_ids)
    if (unindexed or foreign) and not args.allow_other_corpus:
        example = sorted(unindexed or foreign)[:3]
        raise UsageError(f"{args.index} indexes another corpus than {args.data}: {len(foreign)} of its "
                         f"{len(indexed)} documents are not in it and {len(unindexed)} of its {len(corpus_ids)} are "
                         f"not indexed (e.g. {', '.join(map(repr, example))}); pass --allow-other-corpus to "
                         f"evaluate anyway")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from genret.evaluation import DEFAULT_MEASURES, evaluate, format_metrics, write_trec_run
    from indexing.corpus import load_beir

    args.retriever = args.retriever or ("dsi" if args.index else "bm25")
    data = load_beir(args.data, split=args.split, on_duplicate=args.on_duplicate)
    retriever = _retriever(args, data.corpus)
    if args.index is not None:  # the folder says which system it is
        from genret.systems import system_of

        args.retriever = system_of(retriever).name
        _check_same_corpus(retriever.doc_ids, data.corpus["_id"], args)
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


def cmd_run(args: argparse.Namespace) -> int:
    from genret.pipeline import check_expected, format_results, run_recipe
    from genret.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    results = run_recipe(recipe, resume=args.resume, evaluate_after=args.evaluate_after)
    if not args.evaluate_after:
        print(f"trained {results['train_steps']} steps (loss {results['final_loss']:.4f}); "
              f"retriever saved to {results['retriever']}")
        return 0
    print(format_results(results))
    print(f"\nresults: {recipe.output_dir}/results.json  retriever: {recipe.output_dir}/retriever")
    if args.check:
        problems = check_expected(results, recipe.expected)
        for line in problems:
            print(f"MISSED {line}", file=sys.stderr)
        return EXIT_CHECK_FAILED if problems else EXIT_OK
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from genret.retrievers import load_retriever
    from indexing.corpus import is_blank

    blank = [repr(q) for q in args.queries if is_blank(q)]
    if blank:
        raise UsageError(f"nothing to search in {', '.join(blank)} (empty, or only whitespace and control "
                         f"characters)")
    retriever = load_retriever(args.index)
    docids = getattr(retriever.index, "docids", None)  # DSI: show each document's identifier too
    identifiers = dict(zip(docids.doc_ids, docids.identifiers, strict=True)) if docids is not None else {}
    from genret.previews import document_previews

    preview = document_previews(retriever, args.data)
    queries = {str(i): q for i, q in enumerate(args.queries)}
    run = retriever.search(queries, k=args.k, progress=False)
    for qid, text in queries.items():
        print(f"query: {text if text.isprintable() else ascii(text)}")
        for rank, (doc, score) in enumerate(run[qid].items(), start=1):
            shown = f"  id {identifiers[doc]}" if doc in identifiers else ""
            print(f"  {rank:3d}  {doc:20s} {score:10.4f}{shown}  {preview(doc)}")
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    if args.report is not None:
        from genret.scaling.report import write_report

        if args.recipe or args.overrides:
            raise UsageError("--report DIR takes no recipe or overrides")
        for path in write_report(args.report):
            print(f"wrote {path}")
        return 0
    if args.recipe is None:
        raise UsageError("give a sweep recipe (or --report DIR)")
    from genret.recipe import resolve_recipe
    from genret.scaling.config import sweep_kind

    path = resolve_recipe(args.recipe)
    kind = sweep_kind(path)
    if kind == "cost":
        from genret.scaling.cost import run_cost_sweep

        out = run_cost_sweep(str(path), list(args.overrides), not args.no_progress)
    elif kind == "quality":
        from genret.scaling.sweep import run_sweep_file

        out = run_sweep_file(str(path), list(args.overrides), progress=not args.no_progress)
    else:
        raise UsageError(f"{path}: kind {kind!r}; expected quality or cost")
    print(f"results: {out}/results.jsonl  table: {out}/results.md")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from indexing.artifacts import ArtifactError, read_manifest

    try:
        manifest = read_manifest(args.path, verify=True)
    except ArtifactError as err:
        print(f"genret inspect: {err}", file=sys.stderr)
        return EXIT_CHECK_FAILED
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
    from genret.config import ConfigError
    from genret.dsi_pairs import TrainingDataError
    from genret.encoder_cache import EncoderCacheError
    from genret.models import ModelError
    from indexing.artifacts import ArtifactError
    from indexing.corpus import CorpusError
    from indexing.docids.base import DocidError

    return (ArtifactError, ConfigError, CorpusError, DocidError, EncoderCacheError, ModelError, TrainingDataError,
            FileNotFoundError, FileExistsError, UsageError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    # argparse takes positionals only before the first flag: `run RECIPE --resume train.lr=1e-3` leaves the
    # override over; overrides may come anywhere, anything else left over is an error as usual
    if hasattr(args, "overrides") and all("=" in item and not item.startswith("-") for item in rest):
        args.overrides = [*(args.overrides or []), *rest]
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return args.handler(args)
    except _user_errors() as err:
        print(f"genret {args.command}: {err}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
