"""Rank distillation at training time: pseudo-queries labelled with a teacher's top documents.

>>> pairs = distill_pairs(pairs, corpus, docids, teacher="dense", depth=10, samples=4)   # doctest: +SKIP

A pseudo-query trained only towards the document it was cut from teaches the model to name that one document; a
teacher's ranking teaches it which other documents answer the same words. For every distinct source of the
``tasks`` rows (pseudo-queries by default), the teacher (``"bm25"``, or ``"dense"``: all-MiniLM-L6-v2 cosine)
ranks the corpus; its top ``depth`` documents get the probabilities ``softmax(score / max score / temperature)``
and ``samples`` targets are drawn from them (with replacement, seeded), each one more row ``source -> that
document's docid`` with task ``"distill"``. The cross-entropy over those rows pulls the model's distribution over
identifiers towards the teacher's, its original row (source -> own document) staying as it was.

Only training uses a teacher: at query time a genret retriever reads its model and its trie, nothing else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import datasets
import numpy as np

from genret.dsi_pairs import pseudo_query_examples
from genret.pseudo_queries import make_generator
from indexing.columns import column, document_texts
from indexing.docids.base import Docids

TEACHERS = ("bm25", "dense", "bm25+dense")
RRF_K = 60
"""Reciprocal rank fusion's constant (Cormack et al. 2009): a document's fused score is sum 1 / (RRF_K + rank)."""
TASK = "distill"


def teacher_run(teacher: str, corpus: Any, queries: dict[str, str], depth: int) -> dict[str, dict[str, float]]:
    """The teacher's top ``depth`` documents for each query (``{qid: {doc_id: score}}``); ``"bm25+dense"`` fuses
    both teachers' top ``3 x depth`` by reciprocal rank (:func:`fuse_runs`)."""
    if teacher == "bm25+dense":
        runs = [teacher_run(name, corpus, queries, 3 * depth) for name in ("bm25", "dense")]
        return fuse_runs(runs, depth)
    if teacher == "bm25":
        from genret.retrievers.bm25 import BM25Retriever

        return BM25Retriever.index(corpus, show_progress=False).search(queries, k=depth)
    if teacher == "dense":
        from genret.retrievers.dense import DenseRetriever

        return DenseRetriever.index(corpus).search(queries, k=depth, progress=True)
    raise ValueError(f"unknown teacher {teacher!r}; valid: {', '.join(TEACHERS)}")


def fuse_runs(runs: Sequence[dict[str, dict[str, float]]], depth: int) -> dict[str, dict[str, float]]:
    """Reciprocal rank fusion: each document scores ``sum 1 / (RRF_K + rank)`` over the runs that rank it (rank
    from 1, by score, ties by doc id); the top ``depth`` per query, every query of any run kept."""
    fused: dict[str, dict[str, float]] = {}
    for run in runs:
        for qid, docs in run.items():
            scores = fused.setdefault(qid, {})
            for rank, doc in enumerate(sorted(docs, key=lambda d: (-docs[d], d)), start=1):
                scores[doc] = scores.get(doc, 0.0) + 1.0 / (RRF_K + rank)
    return {
        qid: dict(sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:depth]) for qid, scores in fused.items()
    }


def teacher_probabilities(scores: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(scores / max(scores) / temperature)``: scale-free, so one temperature serves BM25 and cosine."""
    scores = np.asarray(scores, dtype=np.float64)
    top = scores.max()
    scaled = scores / (top if top > 0 else 1.0) / temperature
    weights = np.exp(scaled - scaled.max())
    return weights / weights.sum()


def draw_teacher_documents(
    ranked: dict[str, float], samples: int, temperature: float, rng: np.random.Generator
) -> list[str]:
    """``samples`` documents drawn with replacement from a teacher's ranking ``{doc_id: score}`` with the
    probabilities of :func:`teacher_probabilities` (none from an empty ranking)."""
    if not ranked:
        return []
    docs = list(ranked)
    p = teacher_probabilities(np.fromiter(ranked.values(), dtype=np.float64, count=len(ranked)), temperature)
    return [docs[j] for j in rng.choice(len(docs), size=samples, replace=True, p=p).tolist()]


def pseudo_query_judgments(
    corpus: Any,
    generator: Any,
    per_doc: int,
    *,
    teacher: str | None = None,
    depth: int = 10,
    samples: int = 2,
    temperature: float = 0.1,
    seed: int = 0,
) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Training queries and judgments made from the corpus alone, for a system that learns from judgments (SEAL's
    query -> spans of each relevant passage): ``per_doc`` pseudo-queries of every non-empty document (``generator``:
    a :func:`genret.pseudo_queries.make_generator` spec or generator; query ids ``pq-{row}-{j}``), each judged
    relevant (grade 1) to its own document and, with a ``teacher``, to the distinct documents among ``samples``
    draws from the teacher's top ``depth`` (as :func:`distill_pairs` draws). Deterministic for ``seed``."""
    if per_doc < 1 or depth < 1 or samples < 1 or temperature <= 0:
        raise ValueError(
            f"per_doc, depth and samples must be >= 1 and temperature > 0; got {per_doc}, {depth}, "
            f"{samples}, {temperature}"
        )
    doc_ids = [str(d) for d in column(corpus, "_id")]
    sources, rows = pseudo_query_examples(make_generator(generator), document_texts(corpus), per_doc, seed)
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for k, (text, row) in enumerate(zip(sources, rows, strict=True)):
        if text.strip():
            qid = f"pq-{row}-{k % per_doc}"
            queries[qid] = text
            qrels[qid] = {doc_ids[row]: 1}
    if teacher is not None and queries:
        run = teacher_run(teacher, corpus, queries, depth)
        rng = np.random.default_rng(seed)
        for qid in queries:
            for doc in draw_teacher_documents(run.get(qid, {}), samples, temperature, rng):
                qrels[qid][doc] = 1
    return queries, qrels


def distill_pairs(
    pairs: datasets.Dataset,
    corpus: Any,
    docids: Docids,
    *,
    teacher: str = "dense",
    depth: int = 10,
    samples: int = 4,
    temperature: float = 0.1,
    tasks: Sequence[str] = ("pseudo_query",),
    seed: int = 0,
) -> datasets.Dataset:
    """``pairs`` plus ``samples`` teacher-labelled rows per distinct source of the ``tasks`` rows (see the module
    docstring), shuffled with ``seed``."""
    if depth < 1 or samples < 1 or temperature <= 0:
        raise ValueError(f"depth and samples must be >= 1 and temperature > 0; got {depth}, {samples}, {temperature}")
    chosen = set(tasks)
    sources = list(dict.fromkeys(s for s, t in zip(pairs["source"], pairs["task"], strict=True) if t in chosen))
    if not sources:
        return pairs
    run = teacher_run(teacher, corpus, {str(i): s for i, s in enumerate(sources)}, depth)
    row_of = {d: i for i, d in enumerate(docids.doc_ids)}
    rng = np.random.default_rng(seed)
    new_sources: list[str] = []
    new_docs: list[int] = []
    for i, source in enumerate(sources):
        for doc in draw_teacher_documents(run.get(str(i), {}), samples, temperature, rng):
            new_sources.append(source)
            new_docs.append(row_of[doc])
    targets = [docids.tokens(d).tolist() + [docids.eos_token_id] for d in new_docs]
    with _quiet_datasets():
        extra = datasets.Dataset.from_dict(
            {
                "source": new_sources,
                "target": [docids.identifiers[d] for d in new_docs],
                "target_ids": targets,
                "task": [TASK] * len(new_docs),
                "doc": new_docs,
            },
            features=pairs.features,
        )
        return datasets.concatenate_datasets([pairs, extra]).shuffle(seed=seed).flatten_indices()


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """No ``datasets`` progress bars for in-memory bookkeeping that takes well under a second."""
    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()
