"""The baselines evaluated beside genret, built by name: the one place that knows them (recipes' ``eval.baselines``,
``genret evaluate --retriever``, the scaling sweep's baseline systems)."""

from __future__ import annotations

from typing import Any

BASELINES = ("bm25", "dense")
"""``bm25``: bm25s, Lucene BM25 over title + text; ``dense``: all-MiniLM-L6-v2, cosine over mean-pooled states."""


def build_baseline(name: str, corpus: Any, progress: bool = True, **options: Any) -> Any:
    """Index ``corpus`` with baseline ``name``; ``options`` go to that retriever's ``index`` (e.g. ``stemmer``)."""
    if name == "bm25":
        from genret.retrievers.bm25 import BM25Retriever

        return BM25Retriever.index(corpus, show_progress=progress, **options)
    if name == "dense":
        from genret.retrievers.dense import DenseRetriever

        return DenseRetriever.index(corpus, progress=progress, **options)
    raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
