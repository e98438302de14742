"""The corpus axis of a scaling sweep: one (possibly merged) collection cut into nested subsets.

``load_sweep_data`` reads one or several BEIR collections into one corpus. With several, every
document id, query id and judgment is prefixed ``"name/"``, so each collection's queries are judged
only against its own documents (a document of another collection is simply not relevant).

``NestedSubsets`` orders the corpus once: every judged document first (in corpus order), then the
others in a seeded random permutation. ``subset(size)`` is the first ``size`` documents of that
order, returned in corpus order, so for sizes ``a < b`` subset(a) is contained in subset(b) and
every judged document is in every subset: metrics at different sizes are measured on the same
queries and the same relevant documents, and only the distractors grow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexing.corpus import load_beir, load_qrels, load_queries
from indexing.trec import Qrels

ALL = "all"


@dataclass
class SweepData:
    """The merged corpus, the evaluation queries and the training queries (with their judgments)."""

    corpus: Any
    """datasets.Dataset (_id, title, text), every collection's documents in order."""
    eval_queries: dict[str, str]
    eval_qrels: Qrels
    train_queries: dict[str, str]
    train_qrels: Qrels
    collection_of: dict[str, str]
    """Evaluation query id -> its collection's name (for per-collection metrics)."""

    def judged(self, with_train: bool = True) -> set[str]:
        """Document ids judged for the evaluation queries (and the training queries when ``with_train``)."""
        qrels = [*self.eval_qrels.values(), *(self.train_qrels.values() if with_train else [])]
        return {doc for rel in qrels for doc in rel}


def _prefix(name: str | None, key: str) -> str:
    return f"{name}/{key}" if name else key


def load_collection(
    path: str,
    name: str,
    eval_split: str = "test",
    train_split: str | None = None,
    max_eval_queries: int | None = None,
    prefix: bool = True,
) -> SweepData:
    """One BEIR collection; ids prefixed ``name/`` when ``prefix``; only its first ``max_eval_queries``
    judged queries of ``eval_split`` are evaluated."""
    data = load_beir(path, split=eval_split)
    keep = list(data.queries)[:max_eval_queries] if max_eval_queries is not None else list(data.queries)
    train_queries: dict[str, str] = {}
    train_qrels: Qrels = {}
    if train_split:
        train_qrels = load_qrels(path, train_split)
        every = load_queries(path)
        missing = [q for q in train_qrels if q not in every]
        if missing:
            raise ValueError(
                f"{path}: qrels/{train_split}.tsv judges {len(missing)} queries not in queries.jsonl "
                f"(e.g. {missing[0]!r})"
            )
        train_queries = {q: every[q] for q in train_qrels}
    corpus = data.corpus
    tag = name if prefix else None
    if tag:
        columns = corpus.column_names
        ids = [_prefix(tag, d) for d in corpus["_id"]]
        corpus = corpus.remove_columns("_id").add_column("_id", ids).select_columns(columns)
    name, label = tag, name
    return SweepData(
        corpus=corpus,
        eval_queries={_prefix(name, q): data.queries[q] for q in keep},
        eval_qrels={_prefix(name, q): {_prefix(name, d): r for d, r in data.qrels[q].items()} for q in keep},
        train_queries={_prefix(name, q): t for q, t in train_queries.items()},
        train_qrels={_prefix(name, q): {_prefix(name, d): r for d, r in rel.items()} for q, rel in train_qrels.items()},
        collection_of={_prefix(name, q): label for q in keep},
    )


def merge(parts: dict[str, SweepData]) -> SweepData:
    """Collections already prefixed by :func:`load_collection`, as one corpus (in the order given)."""
    import datasets

    if len(parts) == 1:
        return next(iter(parts.values()))
    columns = ["_id", "title", "text"]
    corpus = datasets.concatenate_datasets([p.corpus.select_columns(columns) for p in parts.values()])
    merged = SweepData(corpus, {}, {}, {}, {}, {})
    for part in parts.values():
        merged.eval_queries.update(part.eval_queries)
        merged.eval_qrels.update(part.eval_qrels)
        merged.train_queries.update(part.train_queries)
        merged.train_qrels.update(part.train_qrels)
        merged.collection_of.update(part.collection_of)
    return merged


def load_sweep_data(collections: dict[str, dict[str, Any]]) -> SweepData:
    """``{name: {path, eval_split, train_split, max_eval_queries}}`` -> one SweepData.

    One collection keeps its own ids; several are prefixed ``name/`` (queries, documents, qrels).
    """
    if not collections:
        raise ValueError("no collections to load")
    prefix = len(collections) > 1
    return merge(
        {
            name: load_collection(
                c["path"],
                name,
                c.get("eval_split", "test"),
                c.get("train_split"),
                c.get("max_eval_queries"),
                prefix=prefix,
            )
            for name, c in collections.items()
        }
    )


class NestedSubsets:
    """Nested corpus subsets that always hold the judged documents (see the module docstring)."""

    def __init__(self, doc_ids: Sequence[str], judged: set[str], seed: int = 0) -> None:
        self.doc_ids = list(doc_ids)
        rows = np.arange(len(self.doc_ids))
        is_judged = np.fromiter((d in judged for d in self.doc_ids), dtype=bool, count=len(self.doc_ids))
        missing = judged - set(self.doc_ids)
        if missing:
            raise ValueError(f"{len(missing)} judged documents are not in the corpus (e.g. {sorted(missing)[0]!r})")
        others = rows[~is_judged]
        self.n_judged = int(is_judged.sum())
        self.order = np.concatenate([rows[is_judged], np.random.default_rng(seed).permutation(others)])

    def __len__(self) -> int:
        return len(self.doc_ids)

    def resolve(self, size: int | str | None) -> int:
        """A size as a number of documents: ``"all"`` or None is the whole corpus; others are checked."""
        if size is None or size == ALL:
            return len(self.doc_ids)
        if isinstance(size, str) or isinstance(size, bool) or not isinstance(size, (int, np.integer)):
            raise ValueError(f"size {size!r}: expected a number of documents or {ALL!r}")
        if size < self.n_judged:
            raise ValueError(f"size {size} is smaller than the {self.n_judged} judged documents every subset keeps")
        if size > len(self.doc_ids):
            raise ValueError(f"size {size} is larger than the corpus ({len(self.doc_ids)} documents)")
        return int(size)

    def rows(self, size: int | str | None) -> np.ndarray:
        """Row indices (corpus order) of the subset of ``size`` documents."""
        return np.sort(self.order[: self.resolve(size)])

    def ids(self, size: int | str | None) -> list[str]:
        """Document ids (corpus order) of the subset of ``size`` documents."""
        return [self.doc_ids[i] for i in self.rows(size)]
