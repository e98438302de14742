"""SEAL's scoring: generated n-grams (with the model's log-probabilities) -> ranked documents.

Bevilacqua et al. 2022, section 3.3 and ``aggregate_evidence`` in facebookresearch/SEAL; the
defaults below are SEAL's (``SEALSearcher.DEFAULTS``). All of it runs on the CPU over an
:class:`indexing.ngrams.NgramIndex`.

1. **Weight of an n-gram** (log-odds of "likely given the query" against "frequent in the corpus"):
   ``s_r = log P(n | q)``, ``s_nr = log((count(n) + smoothing) / (tokens + smoothing))``,
   ``w(n) = max(0, (s_r + log(1 - e^s_nr)) - (s_nr + log(1 - e^s_r))) ** alpha``.
2. **First stage.** N-grams occurring at most ``max_hits`` times are located (at most ``max_hits``
   occurrences each), best weight first. An occurrence counts for its document only where none of
   its token positions was already taken by a better n-gram; each distinct n-gram counts once per
   document. A document's n-grams, best first, add ``w * (1 - beta + beta * new / distinct)``, where
   ``distinct`` is the number of distinct tokens of the n-gram and ``new`` those not already in the
   document's earlier n-grams (the repetition penalty: overlapping evidence is worth less).
3. **Intersective rescoring** (``rescore``): the ``fully_score`` best documents of the first stage
   are read back from the index and every positive-weight n-gram (frequent ones too) is matched in
   them; matches are taken greedily by weight where their positions are still free, with the same
   repetition penalty; a document's score is the sum, and only these documents are returned.

Not implemented from SEAL: its extra unigram scores from one decoder step over the whole
vocabulary, and the "single key" mix; both are off in SEAL's reported configuration for MS MARCO
and add little on NQ (paper, table 5).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from indexing.ngrams import NgramIndex


@dataclass
class SealScoring:
    """The knobs of SEAL's n-gram scoring, with SEAL's defaults."""

    alpha: float = 2.0
    """Exponent on each n-gram's log-odds weight (sharpens towards the strongest evidence)."""
    beta: float = 0.8
    """Repetition penalty: how much an n-gram whose tokens a document already matched is discounted."""
    smoothing: float = 5.0
    """Added to n-gram and corpus counts in the unconditional probability."""
    max_hits: int = 1500
    """N-grams occurring more often than this are not located in the first stage (only rescored)."""
    fully_score: int = 1500
    """Documents of the first stage that intersective rescoring reads back and scores fully."""
    rescore: bool = True
    """Intersective rescoring on (SEAL's default) or first-stage scores only."""


def ngram_weights(logprobs: np.ndarray, counts: np.ndarray, n_tokens: int, alpha: float,
                  smoothing: float) -> np.ndarray:
    """``w(n)`` for each n-gram (see the module docstring); 0 for n-grams that do not occur."""
    s_r = np.minimum(np.asarray(logprobs, dtype=np.float64), -1e-10)  # log(1 - e^0) would be -inf
    counts = np.asarray(counts, dtype=np.float64)
    s_nr = np.log((counts + smoothing) / (n_tokens + smoothing))
    s_nr = np.minimum(s_nr, -1e-10)
    odds = (s_r + np.log(-np.expm1(s_nr))) - (s_nr + np.log(-np.expm1(s_r)))
    return np.where(counts > 0, np.maximum(odds, 0.0) ** alpha, 0.0)


def repetition(ngram: Sequence[int], weight: float, seen: set[int], beta: float) -> float:
    """``weight`` discounted by the share of the n-gram's distinct tokens already in ``seen``."""
    distinct = set(ngram)
    if not seen or not distinct:
        return weight
    return weight * (1.0 - beta + beta * len(distinct - seen) / len(distinct))


def first_stage(ngrams: list[tuple[int, ...]], weights: np.ndarray, counts: np.ndarray, index: NgramIndex,
                config: SealScoring) -> dict[int, float]:
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


def intersective(doc_tokens: np.ndarray, ngrams: list[tuple[int, ...]], weights: np.ndarray,
                 by_first: dict[int, list[int]], beta: float) -> float:
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


def score_documents(ngrams: Sequence[Sequence[int]], logprobs: np.ndarray, index: NgramIndex,
                    config: SealScoring) -> list[tuple[int, float]]:
    """Documents (global numbers) with their SEAL scores, best first, for one query's n-grams."""
    unique: dict[tuple[int, ...], float] = {}
    for g, lp in zip(ngrams, np.asarray(logprobs, dtype=np.float64).tolist(), strict=True):
        g = tuple(int(t) for t in g)
        if g and (g not in unique or lp > unique[g]):
            unique[g] = lp
    if not unique:
        return []
    keys = list(unique)
    counts = index.count(index.find(keys))
    weights = ngram_weights(np.array([unique[g] for g in keys]), counts, index.n_tokens, config.alpha,
                            config.smoothing)
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
