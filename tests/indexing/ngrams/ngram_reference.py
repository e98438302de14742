"""Brute-force answers for n-gram store tests: scan every document for every n-gram."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import strategies as st


def flatten(docs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens, doc_offsets)`` of a list of documents, the input every backend builds from."""
    offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(d) for d in docs])
    tokens = np.array([t for d in docs for t in d], dtype=np.int64)
    return tokens, offsets


def occurrences(docs: list[list[int]], ngram: list[int]) -> list[tuple[int, int]]:
    """Every (document, start) where ``ngram`` occurs inside one document; the empty n-gram
    occurs at every token position."""
    m = len(ngram)
    return [
        (d, s)
        for d, doc in enumerate(docs)
        for s in range(len(doc) - m + 1 if m else len(doc))
        if doc[s : s + m] == ngram
    ]


def next_counts(docs: list[list[int]], ngram: list[int]) -> dict[int, int]:
    """Token -> how often it follows ``ngram`` inside a document."""
    m = len(ngram)
    return dict(Counter(docs[d][s + m] for d, s in occurrences(docs, ngram) if s + m < len(docs[d])))


def all_ngrams(docs: list[list[int]], max_len: int) -> set[tuple[int, ...]]:
    return {tuple(doc[s : s + m]) for doc in docs for m in range(1, max_len + 1) for s in range(len(doc) - m + 1)}


def corpora(max_token: int = 5, max_docs: int = 6, max_len: int = 12) -> st.SearchStrategy[list[list[int]]]:
    """Small corpora with repeated tokens, empty documents and n-grams that could cross boundaries."""
    return st.lists(st.lists(st.integers(0, max_token), max_size=max_len), min_size=1, max_size=max_docs)


def wide_corpora() -> st.SearchStrategy[list[list[int]]]:
    """Corpora mixing small ids with large ones (beyond 16 bits), to exercise wide encodings."""
    token = st.one_of(st.integers(0, 3), st.integers(60_000, 70_000), st.sampled_from([0, 65_535, 65_536, 1_000_003]))
    return st.lists(st.lists(token, max_size=10), min_size=1, max_size=5)
