"""SEAL's scoring without a model: each query's own corpus n-grams, one flat log-probability each.

The "no-model check" of :mod:`genret.retrievers.seal_scoring`: what SEAL's weights, first stage and
intersective rescoring make of a query's own n-grams, as if a model had generated exactly those and
found each equally likely. Every distinct n-gram of 1 to ``max_n`` tokens of the tokenized query
that occurs in the index (n-grams across a document boundary or a title marker never do) gets the
log-probability ``logprob``; its weight then depends only on how rare it is in the corpus, so the
check ranks documents by the rare query n-grams they share, with SEAL's repetition penalty. It
needs no model, so it checks the scoring end to end on a real collection, and it is the floor a
trained SEAL model must clear.

N-grams are listed shorter first, then by where they start in the query. The order matters where
weights tie (equal corpus counts: many 3- and 4-grams occur once or twice), because the first stage
and the rescoring take equal weights in input order, and an n-gram taken first blocks the
overlapping ones. Shorter first is the order a model's log-probabilities give a prefix and its
extensions (an extension only adds token log-probabilities, all <= 0). On the test queries of
scifact / cranfield (MiniLM tokens, title markers ``(1, 2)``) the order moves nDCG@10 a lot:
0.609 / 0.234 shorter first, 0.578 / 0.227 by start position then length, 0.594 / 0.232 in the
iteration order of a Python ``set`` of all the query's n-grams, 0.563 / 0.224 longer first.

The check is meant for an index built as the recipes build SEAL's (``title_markers=(1, 2)``);
the markers barely matter to it (scifact 0.609 with and without them; cranfield 0.2343 with,
0.2347 without: without markers an n-gram may run from the title into the text, and every
document is two tokens shorter).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from genret.retrievers.seal_scoring import SealScoring, score_documents
from indexing.ngrams import NgramIndex
from indexing.trec import Run


def query_ngrams(tokens: Sequence[int], max_n: int = 4) -> list[tuple[int, ...]]:
    """Every distinct n-gram of ``tokens`` with 1 to ``max_n`` tokens: shorter first, then by start."""
    tokens = [int(t) for t in tokens]
    seen: dict[tuple[int, ...], None] = {}
    for n in range(1, max_n + 1):
        for start in range(len(tokens) - n + 1):
            seen.setdefault(tuple(tokens[start : start + n]), None)
    return list(seen)


def occurring_ngrams(index: NgramIndex, tokens: Sequence[int], max_n: int = 4) -> list[tuple[int, ...]]:
    """:func:`query_ngrams` of ``tokens`` that occur in the index (in that order)."""
    ngrams = query_ngrams(tokens, max_n)
    counts = index.count(index.find(ngrams)) if ngrams else np.zeros(0, dtype=np.int64)
    return [g for g, c in zip(ngrams, counts.tolist(), strict=True) if c > 0]


def check_ngrams(
    index: NgramIndex, tokenizer: Any, queries: Mapping[str, str], max_n: int = 4
) -> dict[str, list[tuple[int, ...]]]:
    """``{qid: the query's n-grams (query_ngrams of its tokens) that occur in the index}``."""
    return {qid: occurring_ngrams(index, tokenizer.encode(text), max_n) for qid, text in queries.items()}


def ngram_check_run(
    index: NgramIndex,
    tokenizer: Any,
    queries: Mapping[str, str],
    max_n: int = 4,
    logprob: float = -1.0,
    k: int = 100,
    config: SealScoring | None = None,
) -> Run:
    """``{qid: {doc _id: score}}``: the top ``k`` documents of :func:`score_documents` (SEAL's defaults
    unless ``config``) for each query's :func:`check_ngrams`, all with log-probability ``logprob``."""
    config = config or SealScoring()
    run: Run = {}
    for qid, ngrams in check_ngrams(index, tokenizer, queries, max_n).items():
        ranked = score_documents(ngrams, np.full(len(ngrams), logprob), index, config)[:k]
        run[qid] = {index.doc_ids[doc]: score for doc, score in ranked}
    return run
