"""The ``genret`` command's arguments: every subcommand, its options and their checks (:mod:`genret.cli` runs
them). Imports nothing heavy, so ``genret --help`` answers at once."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """examples:
  genret quickstart
  genret run dsi-scifact docids.scheme=atomic output_dir=runs/scifact-atomic
  genret search --index runs/quickstart/retriever "how do bees make honey"
  genret answer --index runs/onepager-squad/retriever "Who won Super Bowl 50?"
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
    p.add_argument(
        "--scheme",
        required=True,
        help="atomic | naive | semantic | title | url, or ngram: every n-gram of the corpus is an "
        "identifier (SEAL; the same as `genret ngrams`)",
    )
    p.add_argument(
        "--backend",
        choices=["sa", "fm"],
        default=None,
        help="ngram: sa (suffix array, fastest) or fm (compressed FM-index); default sa",
    )
    p.add_argument(
        "--title-markers",
        type=_non_negative,
        nargs=2,
        metavar=("BEGIN", "END"),
        default=None,
        help="ngram: token ids around each title (the title view; MiniLM: 1 2)",
    )
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


def _add_ngrams(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ngrams",
        help="build the n-gram index of a corpus (SEAL's identifiers) into an artifact folder",
        description="Tokenize every document and index all its n-grams (suffix array or compressed FM-index), "
        "written as one verified artifact folder that loads memory-mapped.",
    )
    p.add_argument("--data", required=True, help="BEIR folder, corpus .jsonl/.tsv/.csv/.parquet, or HF dataset name")
    p.add_argument("--out", required=True, type=Path, help="artifact folder to write")
    p.add_argument(
        "--backend",
        choices=["sa", "fm"],
        default="sa",
        help="sa: suffix array (fastest, ~6 bytes/token); fm: compressed FM-index (~2.4 bytes/token)",
    )
    p.add_argument("--tokenizer", default="minilm", help="'minilm' (offline default), a local folder or a hub name")
    p.add_argument(
        "--title-markers",
        type=_non_negative,
        nargs=2,
        metavar=("BEGIN", "END"),
        default=None,
        help="token ids around each title (the title view; MiniLM: 1 2); default: title and text indexed as one text",
    )
    p.add_argument("--shard-tokens", type=_positive, default=None, help="most tokens per shard (default 2**30)")
    p.add_argument("--on-duplicate", choices=["error", "warn"], default="error", help="duplicate document ids")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="run a retriever over a collection's queries and print metrics",
        description="Search every judged query of a split and evaluate the run with ir-measures.",
    )
    from genret.retrievers.baselines import BASELINES
    from genret.systems import SYSTEMS

    p.add_argument(
        "--retriever",
        choices=[*BASELINES, *SYSTEMS],
        default=None,
        help="which retriever to run (default: the trained one with --index, else bm25)",
    )
    p.add_argument("--index", type=Path, help="a trained retriever folder (genret train / run): evaluates it")
    p.add_argument(
        "--data", required=True, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) or 'minicorpus'"
    )
    p.add_argument("--split", default="test", help="qrels split (default: test)")
    p.add_argument(
        "--allow-other-corpus",
        action="store_true",
        help="evaluate an --index built on another corpus than --data (refused by default)",
    )
    p.add_argument("--on-duplicate", choices=["error", "warn"], default="error", help="duplicate document ids")
    p.add_argument("--k", type=_positive, default=100, help="documents retrieved per query")
    p.add_argument(
        "--measures", nargs="+", type=_measure, help="ir-measures names (default: nDCG@10 R@1 R@10 R@100 RR@10)"
    )
    p.add_argument("--stemmer", default=None, help="bm25: stemmer language, e.g. 'english' (needs PyStemmer)")
    p.add_argument("--run", type=Path, help="also write the run as a TREC file")
    p.add_argument("--json", type=Path, help="also write the metrics as JSON")


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="show what an artifact folder holds and verify every checksum",
        description="Print an artifact's kind, config, counts and files; exit 3 if it is damaged.",
    )
    p.add_argument("path", type=Path, help="artifact folder")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")


def _add_recipe_commands(sub: argparse._SubParsersAction) -> None:
    for name, help_, desc in [
        (
            "run",
            "index -> train -> evaluate a recipe, writing a result folder",
            "Run a recipe end to end: build the docid index, train the model, save the retriever, and evaluate "
            "it beside the baselines on the same queries. Writes OUTPUT_DIR/{retriever,train,runs,results.json}.",
        ),
        (
            "train",
            "index + train a recipe and save the retriever (no final evaluation)",
            "Build the docid index and train the model of a recipe; saves OUTPUT_DIR/retriever.",
        ),
    ]:
        p = sub.add_parser(name, help=help_, description=desc)
        p.add_argument("recipe", help="recipe YAML file, or the name of a packaged recipe (quickstart, dsi-scifact)")
        p.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. train.epochs=5")
        p.add_argument("--resume", action="store_true", help="continue from the latest training checkpoint")
        p.add_argument("--check", action="store_true", help="fail if metrics miss the recipe's `expected`")
        p.set_defaults(evaluate_after=name == "run")
    p = sub.add_parser(
        "quickstart",
        help="train and evaluate a small index of the embedded corpus (minutes, CPU)",
        description="Runs the packaged quickstart recipe on the embedded minicorpus.",
    )
    p.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. output_dir=runs/qs")
    p.add_argument("--resume", action="store_true", help="continue from the latest training checkpoint")
    p.add_argument("--check", action="store_true", help="fail if metrics miss the recipe's `expected`")
    p.set_defaults(recipe="quickstart", evaluate_after=True)

    p = sub.add_parser(
        "search",
        help="search a trained retriever with a query",
        description="Print the top-k documents a trained retriever generates for each query.",
    )
    p.add_argument("--index", type=Path, required=True, help="trained retriever folder")
    p.add_argument("queries", nargs="+", help="query text(s)")
    p.add_argument("-k", type=_positive, default=10, help="documents per query")
    p.add_argument(
        "--data",
        help="the corpus, to show each hit's title or first words (default: the corpus the "
        "folder was built from, where it records one and it is still there)",
    )


def _add_answer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "answer",
        help="answer a question with a trained 1-Pager folder",
        description="Print the answer a trained 1-Pager retriever decodes for each question, the evidence passage it "
        "lies in, and the keyword path that led there.",
    )
    p.add_argument("--index", type=Path, required=True, help="trained 1-Pager retriever folder")
    p.add_argument("questions", nargs="+", help="question text(s)")
    p.add_argument("--closed-book", action="store_true", help="the answer free of the passage (the baseline)")


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


def _version() -> str:
    from indexing.artifacts import genret_version

    return genret_version()


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
    _add_answer(sub)
    _add_scale(sub)
    return parser
