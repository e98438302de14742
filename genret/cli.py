"""The ``genret`` command: build docid indexes, evaluate retrievers, inspect artifacts.

Each subcommand is a thin layer over the Python API (``indexing`` and ``genret``); heavy imports
happen inside the handlers so ``genret --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from genret.cli_parser import build_parser

EXIT_OK, EXIT_BUG, EXIT_USER_ERROR, EXIT_CHECK_FAILED = 0, 1, 2, 3


class UsageError(ValueError):
    """Options that cannot go together or are missing: exit 2 with the message, like argparse's own."""


def cmd_index(args: argparse.Namespace) -> int:
    from indexing.artifacts import check_output
    from indexing.corpus import load_corpus
    from indexing.docid_index import build_index
    from indexing.docids import make_scheme
    from indexing.tokenizer import load_tokenizer

    if args.scheme == "ngram":  # SEAL's identifiers: an n-gram index, not docids
        docid_only = [
            f"--{name.replace('_', '-')}"
            for name in ("seed", "order", "k", "c", "encoder", "max_tokens")
            if getattr(args, name) is not None
        ]
        if docid_only:
            raise UsageError(f"{', '.join(docid_only)} do not apply to --scheme ngram")
        args.backend = args.backend or "sa"
        return cmd_ngrams(args)
    ngram_only = [
        flag
        for flag, value in (
            ("--backend", args.backend),
            ("--title-markers", args.title_markers),
            ("--shard-tokens", args.shard_tokens),
        )
        if value is not None
    ]
    if ngram_only:
        raise UsageError(f"{', '.join(ngram_only)} only apply to --scheme ngram")
    check_output(args.out, args.overwrite)  # before minutes of building, not after
    options = {
        "seed": args.seed,
        "order": args.order,
        "k": args.k,
        "c": args.c,
        "encoder": args.encoder,
        "max_tokens": args.max_tokens,
    }
    scheme = make_scheme(args.scheme, **{k: v for k, v in options.items() if v is not None})
    if hasattr(scheme, "progress"):
        scheme.progress = True  # embedding a corpus takes minutes on a CPU: show it
    tokenizer = None if args.tokenizer.lower() == "none" else load_tokenizer(args.tokenizer)
    corpus = load_corpus(args.data, on_duplicate=args.on_duplicate)
    print(f"loaded {len(corpus)} documents from {args.data}", file=sys.stderr)
    index = build_index(corpus, scheme, tokenizer, source=str(args.data))
    out = index.save(args.out, overwrite=args.overwrite)
    counts = index.counts()
    print(
        f"wrote {out}: {counts['documents']} documents, scheme {args.scheme}, "
        f"{counts['trie_nodes']} trie nodes, longest id {counts['max_id_length']} tokens"
    )
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
    index = NgramIndex.build(
        corpus,
        tokenizer,
        backend=args.backend,
        title_markers=markers,
        shard_tokens=args.shard_tokens or DEFAULT_SHARD_TOKENS,
    )
    out = index.save(args.out, overwrite=args.overwrite)
    print(
        f"wrote {out}: {index.n_docs} documents, {index.n_tokens} tokens, {index.n_shards} shard(s), "
        f"backend {index.backend}, {index.nbytes() / max(index.n_tokens, 1):.2f} bytes/token"
    )
    return 0


def _retriever(args: argparse.Namespace, corpus: object) -> object:
    from genret.retrievers.baselines import build_baseline
    from genret.systems import SYSTEMS

    if args.retriever in SYSTEMS:
        from genret.retrievers import load_retriever

        if args.index is None:
            raise UsageError(f"--retriever {args.retriever} needs --index DIR (a trained retriever folder)")
        return load_retriever(args.index)
    options = {"stemmer": args.stemmer} if args.retriever == "bm25" else {}
    return build_baseline(args.retriever, corpus, **options)


def _check_same_corpus(indexed: list[str], corpus_ids: list[str], args: argparse.Namespace) -> None:
    """A trained index scored against another corpus gives meaningless figures: refuse unless asked."""
    unindexed = set(corpus_ids).difference(indexed)
    foreign = set(indexed).difference(corpus_ids)
    if (unindexed or foreign) and not args.allow_other_corpus:
        example = sorted(unindexed or foreign)[:3]
        raise UsageError(
            f"{args.index} indexes another corpus than {args.data}: {len(foreign)} of its "
            f"{len(indexed)} documents are not in it and {len(unindexed)} of its {len(corpus_ids)} are "
            f"not indexed (e.g. {', '.join(map(repr, example))}); pass --allow-other-corpus to "
            f"evaluate anyway"
        )


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
    print(f"{args.retriever} on {args.data} ({args.split}: {len(data.queries)} queries, {len(data.corpus)} documents)")
    print(format_metrics(metrics))
    answers = _answer_metrics(retriever, data.queries, args.data)
    if answers is not None:  # a system that answers (1-Pager), on a folder with answers.jsonl
        print(f"answers ({answers.pop('questions')} questions)")
        print(format_metrics(answers))
        metrics = {**metrics, "answers": answers}
    if args.run:
        args.run.parent.mkdir(parents=True, exist_ok=True)
        write_trec_run(run, args.run, tag=args.retriever)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(metrics, indent=2) + "\n")
    return 0


def _answer_metrics(retriever: Any, queries: dict[str, str], data: str) -> dict[str, Any] | None:
    """EM / F1 of a retriever that answers, over the queries with gold answers in ``data``/answers.jsonl; None
    when the retriever does not answer or the folder has no answers."""
    from genret.retrievers.onepager import answer_scores
    from indexing.answers import ANSWERS_FILE, load_answers

    path = Path(data) / ANSWERS_FILE
    if not hasattr(retriever, "answer") or not path.is_file():
        return None
    gold = {q: a.texts for q, a in load_answers(path).items()}
    if not any(q in gold for q in queries):
        return None
    return answer_scores(retriever, queries, gold)[0]


def cmd_run(args: argparse.Namespace) -> int:
    from genret.pipeline import check_expected, format_results, run_recipe
    from genret.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    results = run_recipe(recipe, resume=args.resume, evaluate_after=args.evaluate_after)
    if not args.evaluate_after:
        print(
            f"trained {results['train_steps']} steps (loss {results['final_loss']:.4f}); "
            f"retriever saved to {results['retriever']}"
        )
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
        raise UsageError(f"nothing to search in {', '.join(blank)} (empty, or only whitespace and control characters)")
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


def cmd_answer(args: argparse.Namespace) -> int:
    from genret.retrievers import load_retriever
    from indexing.corpus import is_blank

    blank = [repr(q) for q in args.questions if is_blank(q)]
    if blank:
        raise UsageError(f"nothing to answer in {', '.join(blank)} (empty, or only whitespace and control characters)")
    retriever = load_retriever(args.index)
    if not hasattr(retriever, "answer"):
        raise UsageError(f"{args.index}: a {type(retriever).__name__} folder finds documents but does not answer")
    questions = {str(i): q for i, q in enumerate(args.questions)}
    answers = retriever.answer(questions, closed_book=args.closed_book, progress=False)
    for qid, text in questions.items():
        found = answers[qid]
        print(f"question: {text if text.isprintable() else ascii(text)}")
        print(f"  answer:   {found.text or '(none: no beam finished an answer)'}")
        print(f"  path:     {' | '.join(found.path)}")
        if found.doc is not None:
            passage = retriever.passages[found.doc] if retriever.passages is not None else ""
            print(f"  evidence: {found.doc_id}  {passage}")
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
    print(f"{args.path}: {manifest['kind']} (format {manifest['format_version']}, genret {manifest['genret_version']})")
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

    return (
        ArtifactError,
        ConfigError,
        CorpusError,
        DocidError,
        EncoderCacheError,
        ModelError,
        TrainingDataError,
        FileNotFoundError,
        FileExistsError,
        UsageError,
    )


HANDLERS = {
    "index": cmd_index,
    "ngrams": cmd_ngrams,
    "evaluate": cmd_evaluate,
    "inspect": cmd_inspect,
    "run": cmd_run,
    "train": cmd_run,
    "quickstart": cmd_run,
    "search": cmd_search,
    "answer": cmd_answer,
    "scale": cmd_scale,
}
"""Subcommand -> the function that runs it (``genret.cli_parser`` declares their arguments)."""


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
        return HANDLERS[args.command](args)
    except _user_errors() as err:
        print(f"genret {args.command}: {err}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
