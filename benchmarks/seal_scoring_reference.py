"""Reference copy of SEAL's scoring as it was in pure Python (``genret/retrievers/seal_scoring.py``
before its numpy / numba rewrite, commit bc58c1f), kept only for ``benchmarks/seal_scoring.py`` and for
``tests/genret/retrievers/test_seal_scoring.py``, which check that the library gives the same scores and rankings.

Not part of the library and not to be imported by it; the functions are unchanged, except that
``SealScoring`` (the knobs, unchanged) is imported from the library instead of defined here; "the
module docstring" in their docstrings is the library module's (what each step computes).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from genret.retrievers.seal_scoring import SealScoring, repetition, weighted_ngrams
from indexing.ngrams import NgramIndex


def first_stage(
    ngrams: list[tuple[int, ...]], weights: np.ndarray, counts: np.ndarray, index: NgramIndex, config: SealScoring
) -> dict[int, float]:
    """Document -> first-stage score from the rare n-grams' occurrences (step 2 of the module docstring)."""
    rare = [i for i in np.argsort(-weights, kind="stable") if weights[i] > 0 and 0 < counts[i] <= config.max_hits]
    if not rare:
        return {}
    located = index.locate(index.find([ngrams[i] for i in rare]), limit=config.max_hits)
    taken: set[tuple[int, int]] = set()
    evidence: dict[int, list[int]] = defaultdict(list)  # document -> its n-grams, best first
    for i, (docs, starts) in zip(rare, located, strict=True):
        length = len(ngrams[i])
        for doc, start in zip(docs.tolist(), starts.tolist(), strict=True):
            positions = [(doc, p) for p in range(start, start + length)]
            if any(p in taken for p in positions):
                continue
            taken.update(positions)
            if not evidence[doc] or evidence[doc][-1] != i:
                evidence[doc].append(i)
    scores = {}
    for doc, found in evidence.items():
        seen: set[int] = set()
        total = 0.0
        for i in found:
            total += repetition(ngrams[i], float(weights[i]), seen, config.beta)
            seen.update(ngrams[i])
        scores[doc] = total
    return scores


def intersective(
    doc_tokens: np.ndarray,
    ngrams: list[tuple[int, ...]],
    weights: np.ndarray,
    by_first: dict[int, list[int]],
    beta: float,
) -> float:
    """One document's full score: greedy non-overlapping matches of the n-grams, best weight first."""
    tokens = doc_tokens.tolist()
    matches = []  # (-weight, ngram index, start)
    for start, token in enumerate(tokens):
        for i in by_first.get(token, ()):
            g = ngrams[i]
            if tokens[start : start + len(g)] == list(g):
                matches.append((-float(weights[i]), i, start))
    matches.sort()
    free = [True] * len(tokens)
    seen: set[int] = set()
    counted: set[int] = set()
    total = 0.0
    for neg, i, start in matches:
        g = ngrams[i]
        if not all(free[start : start + len(g)]):
            continue
        free[start : start + len(g)] = [False] * len(g)
        if i in counted:  # a further occurrence of the same n-gram only takes its positions
            continue
        counted.add(i)
        total += repetition(g, -neg, seen, beta)
        seen.update(g)
    return total


def score_documents(
    ngrams: Sequence[Sequence[int]], logprobs: np.ndarray, index: NgramIndex, config: SealScoring
) -> list[tuple[int, float]]:
    """Documents (global numbers) with their SEAL scores, best first, for one query's n-grams."""
    keys, counts, weights = weighted_ngrams(ngrams, logprobs, index, config)
    if not keys:
        return []
    scores = first_stage(keys, weights, counts, index, config)
    ranked = sorted(scores.items(), key=lambda x: (-x[1], x[0]))
    if not config.rescore or not ranked:
        return ranked
    by_first: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(keys):
        if weights[i] > 0:
            by_first[g[0]].append(i)
    head = ranked[: config.fully_score]  # as in SEAL, only these are returned: their scores share one scale
    rescored = {doc: intersective(index.doc_tokens(doc), keys, weights, by_first, config.beta) for doc, _ in head}
    return sorted(rescored.items(), key=lambda x: (-x[1], x[0]))
