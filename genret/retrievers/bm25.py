"""BM25 baseline on bm25s: index a corpus, search a batch of queries, save and load as an artifact.

>>> retriever = BM25Retriever.index(corpus)                 # doctest: +SKIP
>>> run = retriever.search({"q1": "cell death"}, k=100)     # doctest: +SKIP
>>> retriever.save_pretrained("indexes/scifact-bm25")       # doctest: +SKIP
>>> BM25Retriever.from_pretrained("indexes/scifact-bm25")   # doctest: +SKIP

Defaults are bm25s's (Lucene variant, k1 = 1.5, b = 0.75, English stopwords, no stemming) over
title + text; on scifact that gives nDCG@10 0.662 (0.686 with ``stemmer="english"``, which needs
PyStemmer). Documents are ranked by bm25s; a document that shares no term with the query scores 0
and is left out of the run, so a query with no indexed term gets an empty result.

On disk (kind ``bm25``): bm25s's own plain files (``data/indices/indptr.csc.index.npy``,
``vocab.index.json``, ``params.index.json``) plus ``doc_ids.json``, under a checksummed manifest.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import bm25s

from genret.retrievers.base import check_k
from indexing.artifacts import ArtifactError, load_json, read_manifest, save_json, write_artifact
from indexing.columns import column, document_texts, n_rows
from indexing.trec import Run

logger = logging.getLogger(__name__)

KIND = "bm25"
DOC_IDS = "doc_ids.json"
METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")


@dataclass(frozen=True)
class BM25Config:
    """How documents and queries are tokenized and scored; stored in the artifact's manifest."""

    k1: float = 1.5
    b: float = 0.75
    method: str = "lucene"
    delta: float = 0.5  # only used by bm25l / bm25+
    stopwords: str | list[str] | None = "en"
    stemmer: str | None = None
    fields: tuple[str, ...] = field(default=("title", "text"))

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown BM25 method {self.method!r}; choose one of {METHODS}")
        if not self.fields:
            raise ValueError("fields must name at least one text column, e.g. ('title', 'text')")
        object.__setattr__(self, "fields", tuple(self.fields))
        if self.stopwords is not None and not isinstance(self.stopwords, str):
            object.__setattr__(self, "stopwords", sorted(set(self.stopwords)))

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"fields": list(self.fields)}


def load_stemmer(name: str | None) -> Any:
    """A PyStemmer stemmer for ``name`` (e.g. ``"english"``), or None for no stemming."""
    if name is None:
        return None
    try:
        import Stemmer
    except ImportError:
        raise ImportError(
            f"stemmer={name!r} needs PyStemmer, which is not installed: pip install PyStemmer (or use stemmer=None)"
        ) from None
    if name not in Stemmer.algorithms():
        raise ValueError(f"unknown stemmer {name!r}; PyStemmer knows {sorted(Stemmer.algorithms())}")
    return Stemmer.Stemmer(name)


def corpus_texts(corpus: Any, fields: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(doc _ids, texts)`` from a ``datasets.Dataset`` or a sequence of mappings; fields joined by a space."""
    if n_rows(corpus) == 0:
        return [], []
    try:
        doc_ids = [str(x) for x in column(corpus, "_id")]
        return doc_ids, document_texts(corpus, fields)
    except KeyError as err:
        raise ValueError(err.args[0]) from None


class BM25Retriever:
    """BM25 over a corpus's text fields, backed by a ``bm25s.BM25`` index.

    Build with :meth:`index`, load with :meth:`from_pretrained`; the constructor takes an index
    that already exists.
    """

    def __init__(
        self, model: bm25s.BM25, doc_ids: Sequence[str], config: BM25Config, show_progress: bool = True
    ) -> None:
        num_docs = int(model.scores["num_docs"])
        if num_docs != len(doc_ids):
            raise ValueError(f"the index holds {num_docs} documents but {len(doc_ids)} doc ids were given")
        self.model = model
        self.doc_ids = list(doc_ids)
        self.config = config
        self.show_progress = show_progress
        self._stemmer = load_stemmer(config.stemmer)

    # ------------------------------------------------------------------ build

    @classmethod
    def index(
        cls,
        corpus: Any,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        stopwords: str | Iterable[str] | None = "en",
        stemmer: str | None = None,
        fields: Sequence[str] = ("title", "text"),
        delta: float = 0.5,
        show_progress: bool = True,
    ) -> BM25Retriever:
        """Index ``corpus`` (columns ``_id`` and ``fields``; a ``datasets.Dataset`` or a list of dicts).

        ``stopwords``: a bm25s language code (``"en"``), a list of words, or None.
        ``stemmer``: None (default, needs nothing) or a PyStemmer language such as ``"english"``.
        """
        config = BM25Config(
            k1=k1,
            b=b,
            method=method,
            delta=delta,
            stopwords=stopwords,  # type: ignore[arg-type]
            stemmer=stemmer,
            fields=tuple(fields),
        )
        stem = load_stemmer(stemmer)  # fail before the work if PyStemmer is missing
        doc_ids, texts = corpus_texts(corpus, config.fields)
        if not doc_ids:
            raise ValueError("cannot index an empty corpus")
        if len(set(doc_ids)) != len(doc_ids):
            seen: set[str] = set()
            dupes = sorted({d for d in doc_ids if d in seen or seen.add(d)})
            raise ValueError(f"corpus has {len(dupes)} duplicate _id(s), e.g. {dupes[:5]}")
        tokens = bm25s.tokenize(
            texts, stopwords=config.stopwords or [], stemmer=stem, return_ids=False, show_progress=show_progress
        )
        model = bm25s.BM25(k1=k1, b=b, delta=delta, method=method)
        model.index(tokens, show_progress=show_progress)
        return cls(model, doc_ids, config, show_progress=show_progress)

    # ------------------------------------------------------------------ search

    def search(self, queries: Mapping[str, str], k: int = 100) -> Run:
        """Top ``k`` documents per query as ``{qid: {doc _id: score}}``.

        ``k`` beyond the corpus size returns every matching document. Documents sharing no term
        with the query (score 0) are left out, so a query that is empty or has no indexed term
        maps to ``{}``.
        """
        check_k(k)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        run: Run = {qid: {} for qid in queries}
        if not queries:
            return run
        qids = list(queries)
        tokens = bm25s.tokenize(
            [queries[q] or "" for q in qids],
            stopwords=self.config.stopwords or [],
            stemmer=self._stemmer,
            return_ids=False,
            show_progress=False,
        )
        vocab = self.model.vocab_dict
        ids = [[vocab[t] for t in toks if t and t in vocab] for toks in tokens]
        live = [i for i, query_ids in enumerate(ids) if query_ids]
        if not live:
            return run
        top = min(k, len(self.doc_ids))
        docs, scores = self.model.retrieve([ids[i] for i in live], k=top, show_progress=self.show_progress)
        keep_zero = self.config.method in ("bm25l", "bm25+")  # these give non-matching documents a score
        for row, i in enumerate(live):
            hits = run[qids[i]]
            for doc, score in zip(docs[row].tolist(), scores[row].tolist(), strict=True):
                if keep_zero or score != 0.0:
                    hits[self.doc_ids[doc]] = float(score)
        return run

    # ------------------------------------------------------------------ save / load

    def save_pretrained(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Write an artifact folder (kind ``bm25``) atomically; an existing one only with ``overwrite``."""

        def write_files(tmp: Path) -> None:
            self.model.save(tmp, corpus=None, allow_pickle=False, show_progress=False)
            save_json(tmp, DOC_IDS, self.doc_ids)

        write_artifact(
            path,
            kind=KIND,
            write_files=write_files,
            config=self.config.to_json() | {"bm25s_version": bm25s.__version__},
            counts={"documents": len(self.doc_ids), "vocabulary": len(self.model.vocab_dict)},
            overwrite=overwrite,
        )

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, show_progress: bool = True) -> BM25Retriever:
        """Load a folder written by :meth:`save_pretrained`; a damaged or foreign folder raises ArtifactError."""
        manifest = read_manifest(path, kind=KIND)
        stored = dict(manifest["config"])
        stored.pop("bm25s_version", None)
        try:
            config = BM25Config(**stored)
        except (TypeError, ValueError) as err:
            raise ArtifactError(f"{path}: bad bm25 config in manifest ({err}); rebuild the index") from None
        doc_ids = load_json(Path(path), DOC_IDS)
        model = bm25s.BM25.load(path, mmap=False, allow_pickle=False, show_progress=False)
        if not isinstance(doc_ids, list) or int(model.scores["num_docs"]) != len(doc_ids):
            raise ArtifactError(f"{path}: {DOC_IDS} does not match the index; rebuild it")
        return cls(model, doc_ids, config, show_progress=show_progress)

    # ------------------------------------------------------------------ misc

    def __len__(self) -> int:
        return len(self.doc_ids)

    def __repr__(self) -> str:
        c = self.config
        stopwords = c.stopwords if c.stopwords is None or isinstance(c.stopwords, str) else "custom"
        return (
            f"BM25Retriever({len(self.doc_ids)} documents, method={c.method!r}, k1={c.k1}, b={c.b}, "
            f"stopwords={stopwords!r}, stemmer={c.stemmer!r}, fields={c.fields})"
        )


__all__ = ["BM25Config", "BM25Retriever", "load_stemmer"]
