"""Loading and validating corpora, queries and qrels (BEIR folders, files, Datasets, the hub).

Everything downstream (docid schemes, tries, n-gram stores, evaluation) trusts what comes out
of here: ids are unique non-empty strings, title and text are strings. So bad input is refused
with a message naming the file, the line (1-based; a row index for tables) and the field, and
every tolerated problem (duplicates, empty documents, dangling qrels) is reported in a
:class:`DataWarning`, never silently dropped. Qrels live in :mod:`indexing.qrels`, re-exported.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.compute as pc
from datasets.fingerprint import generate_random_fingerprint
from datasets.table import InMemoryTable

from indexing.builtin import resolve
from indexing.qrels import (
    CorpusError,
    DataWarning,
    check_option,
    check_qrels,
    examples,
    load_qrels,
    qrels_path,
    warn,
)
from indexing.records import (
    EXTRAS,
    Source,
    arrow_table,
    dedupe,
    hub_qrels,
    looks_like_data_path,
    parse,
)

__all__ = [
    "BeirData",
    "CorpusError",
    "DataWarning",
    "check_qrels",
    "corpus_stats",
    "load_beir",
    "load_corpus",
    "load_qrels",
    "load_queries",
]


@dataclass(repr=False)
class BeirData:
    """A BEIR folder for one split: the corpus, the queries judged in the split, their qrels."""

    corpus: datasets.Dataset
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    def __repr__(self) -> str:
        judgments = sum(len(judged) for judged in self.qrels.values())
        return f"BeirData(corpus={len(self.corpus)} docs, queries={len(self.queries)}, qrels={judgments})"


_BLANK = r"[\s\p{Cc}\p{Cf}\p{Z}]"  # whitespace, control and format characters: nothing a reader or a model sees


def is_blank(text: str) -> bool:
    """True when ``text`` holds nothing but whitespace, control and format characters (an empty document)."""
    return not text.strip() or all(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf") for ch in text)


def _blank_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """:func:`is_blank` of every value of a string column, at arrow speed."""
    return pc.equal(pc.replace_substring_regex(column, _BLANK, ""), "")


def _empty_mask(table: pa.Table) -> pa.ChunkedArray:
    """Rows whose title and text are both blank (:func:`is_blank`)."""
    return pc.and_(_blank_column(table["title"]), _blank_column(table["text"]))


def load_corpus(source: Source, *, on_duplicate: str = "error", progress: bool = True) -> datasets.Dataset:
    """Load and validate a corpus as a Dataset with string columns ``_id``, ``title``, ``text``.

    ``source``: a BEIR folder (its ``corpus.jsonl``), a ``.jsonl``/``.json`` file (JSON lines,
    optionally ``.gz``), a ``.tsv``/``.csv`` file with a header (id column ``_id``, ``id`` or
    ``docid``; ``text`` required, ``title`` optional; a ``.tsv`` is plain text, one record per line split on
    tabs, quotes kept as written; a ``.csv`` is RFC 4180, parsed strictly), a ``.parquet`` file, a
    ``datasets.Dataset``, or else a Hugging Face hub dataset name (e.g. ``BeIR/scifact``).
    Int ids become strings; a missing title becomes "". ``url`` and ``image`` columns are
    kept when present (JSON nulls allowed there); every other field is dropped.

    Bad records raise CorpusError naming file, line (row for tables) and field. Duplicate ids:
    ``on_duplicate="error"`` raises, ``"warn"`` keeps the first of each and says which were
    dropped. Empty documents are kept and counted in a DataWarning (not for image corpora,
    where empty text is normal). A source with no documents at all is refused. ``progress`` shows a progress bar
    for large files.
    """
    check_option("on_duplicate", on_duplicate)
    parsed = parse(source, "corpus", progress)
    keep = dedupe(parsed, on_duplicate)
    table = pa.table({k: v if not isinstance(v, list) else pa.array(v, pa.string()) for k, v in parsed.columns.items()})
    if keep is not None:
        table = table.take(pa.array(keep, pa.int64()))
    features = datasets.Features.from_arrow_schema(table.schema)
    for key in EXTRAS:
        if key in table.column_names and parsed.features is not None and key in parsed.features:
            features[key] = parsed.features[key]  # e.g. an Image feature of the source Dataset
    corpus = datasets.Dataset(
        InMemoryTable(table), info=datasets.DatasetInfo(features=features), fingerprint=generate_random_fingerprint()
    )  # hashing 1M docs costs seconds
    if not len(corpus):
        raise CorpusError(f"{parsed.where}: no documents (an index of nothing retrieves nothing)")
    if "image" not in table.column_names:
        empty = _empty_mask(table)
        count = pc.sum(empty).as_py() or 0
        if count:
            ids = table["_id"].filter(empty).slice(0, 6).to_pylist()
            warn(
                f"{parsed.where}: {count} empty documents (no title, no text), kept: {examples(map(repr, ids), count)}"
            )
    return corpus


def load_queries(source: Source, *, on_duplicate: str = "error") -> dict[str, str]:
    """Load queries as ``{query_id: text}`` in file order; sources and checks as for load_corpus.

    Only ``_id`` (or ``id``/``qid``) and ``text`` are read. Empty query texts are reported in a
    DataWarning and kept.
    """
    check_option("on_duplicate", on_duplicate)
    parsed = parse(source, "queries", progress=False)
    keep = dedupe(parsed, on_duplicate)
    ids, texts = parsed.columns["_id"], parsed.columns["text"]
    if not isinstance(ids, list):
        ids, texts = ids.to_pylist(), texts.to_pylist()
    rows = range(len(ids)) if keep is None else keep
    queries = {ids[row]: texts[row] for row in rows}
    empty = [qid for qid, text in queries.items() if is_blank(text)]
    if empty:
        warn(
            f"{parsed.where}: {len(empty)} empty queries (nothing but whitespace or control characters), kept: "
            f"{examples(map(repr, empty), len(empty))}"
        )
    return queries


def load_beir(
    folder: str | os.PathLike[str],
    split: str = "test",
    *,
    on_duplicate: str = "error",
    on_dangling: str = "warn",
) -> BeirData:
    """Load a BEIR folder (corpus.jsonl, queries.jsonl, qrels/{split}.tsv) for one split.

    BEIR's queries.jsonl holds the queries of every split, so only those judged in ``split``
    are kept (in file order). Qrels are checked against the corpus and all the queries
    (:func:`check_qrels`); dangling judgments are kept and reported as ``on_dangling`` says.
    """
    check_option("on_duplicate", on_duplicate)
    check_option("on_dangling", on_dangling)
    path = Path(resolve(folder))
    if path.is_dir():
        qrels = load_qrels(path, split)  # first: a missing split fails before the corpus is read
        where = str(qrels_path(path, split))
        source: Source = path
    elif looks_like_data_path(folder):
        raise FileNotFoundError(f"not a BEIR folder: {path}")
    else:  # a hub dataset in BEIR's layout: NAME (corpus, queries configs) and NAME-qrels
        qrels, where, source = hub_qrels(str(folder), split), f"{folder}-qrels[{split}]", str(folder)
    corpus = load_corpus(source, on_duplicate=on_duplicate)
    queries = load_queries(source, on_duplicate=on_duplicate)
    check_qrels(qrels, arrow_table(corpus)["_id"].to_pylist(), queries, on_dangling=on_dangling, name=where)
    return BeirData(corpus, {qid: text for qid, text in queries.items() if qid in qrels}, qrels)


def corpus_stats(corpus: datasets.Dataset) -> dict[str, int]:
    """Counts that describe a loaded corpus.

    ``documents``; ``empty_documents`` (title and text both blank: :func:`is_blank`);
    ``with_title`` (a non-blank title); ``empty_text`` (blank text, title or not);
    ``text_chars`` (characters of text in all); and ``with_url`` / ``with_image`` (non-null
    values) when those columns exist.
    """
    table = arrow_table(corpus)
    stats = {
        "documents": len(table),
        "empty_documents": pc.sum(_empty_mask(table)).as_py() or 0,
        "with_title": len(table) - (pc.sum(_blank_column(table["title"])).as_py() or 0),
        "empty_text": pc.sum(_blank_column(table["text"])).as_py() or 0,
        "text_chars": pc.sum(pc.utf8_length(table["text"])).as_py() or 0,
    }
    for key in EXTRAS:
        if key in table.column_names:
            stats[f"with_{key}"] = len(table) - table[key].null_count
    return stats
