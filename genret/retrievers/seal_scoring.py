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

Implementation: the first stage and the rescoring are numba kernels
(:mod:`genret.retrievers.seal_kernels`) over one query's n-grams as flat arrays; ``sa`` shards'
documents are read in place from the shard's text, other backends' through ``doc_tokens`` one by
one (``fm``: LF walks, several times slower). They give what SEAL's pure-Python loops give: the
same scores (same floats, same order of additions) and the same rankings (ties by document number).

Not implemented from SEAL: its extra unigram scores from one decoder step over the whole
vocabulary, and the "single key" mix; both are off in SEAL's reported configuration for MS MARCO
and add little on NQ (paper, table 5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from genret.retrievers.seal_kernels import first_stage_kernel, intersective_kernel
from indexing.ngrams import NgramIndex, Ranges
from indexing.ngrams.sa import SuffixArrayShard


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


def ngram_weights(
    logprobs: np.ndarray, counts: np.ndarray, n_tokens: int, alpha: float, smoothing: float
) -> np.ndarray:
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


Flat = tuple[np.ndarray, np.ndarray, np.ndarray, int]
"""A query's n-grams as ``(offsets, tokens, local, n_local)`` (see :mod:`genret.retrievers.seal_kernels`)."""


def _flat(ngrams: Sequence[Sequence[int]]) -> Flat:
    """``(offsets, tokens, local, n_local)``: the n-grams as CSR arrays (see :mod:`seal_kernels`)."""
    lengths = np.fromiter((len(g) for g in ngrams), dtype=np.int64, count=len(ngrams))
    offsets = np.zeros(len(ngrams) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = np.fromiter(chain.from_iterable(ngrams), dtype=np.int64, count=int(offsets[-1]))
    unique, local = np.unique(tokens, return_inverse=True)
    return offsets, tokens, local.astype(np.int64).reshape(-1), len(unique)


def _best_first(weights: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Indices where ``keep``, weight descending, ties by index (the order the scoring takes n-grams in)."""
    order = np.argsort(-weights, kind="stable")
    return order[keep[order]].astype(np.int64)


def _first_stage(
    flat: Flat, weights: np.ndarray, ranges: Ranges, index: NgramIndex, config: SealScoring
) -> tuple[np.ndarray, np.ndarray]:
    """``(documents ascending, scores)`` of the first stage (step 2 of the module docstring); ``ranges`` are the
    n-grams' ranges in ``index``, found once per query."""
    offsets, _, local, n_local = flat
    counts = index.count(ranges)
    rare = _best_first(weights, (weights > 0) & (counts > 0) & (counts <= config.max_hits))
    if not len(rare):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    occ_offsets, occ_docs, occ_starts = index.locate_csr(ranges[rare], limit=config.max_hits)
    return first_stage_kernel(
        rare,
        np.asarray(weights, dtype=np.float64),
        offsets,
        local,
        n_local,
        np.asarray(occ_offsets, dtype=np.int64),
        np.asarray(occ_docs, dtype=np.int64),
        np.asarray(occ_starts, dtype=np.int64),
        float(config.beta),
    )


def first_stage(
    ngrams: list[tuple[int, ...]], weights: np.ndarray, counts: np.ndarray, index: NgramIndex, config: SealScoring
) -> dict[int, float]:
    """Document -> first-stage score from the rare n-grams' occurrences (step 2 of the module docstring)."""
    weights = np.asarray(weights, dtype=np.float64)
    if not len(ngrams):
        return {}
    ranges = index.find(ngrams)
    if not np.array_equal(index.count(ranges), np.asarray(counts, dtype=np.int64)):
        raise ValueError("counts are not the n-grams' counts in this index")
    docs, scores = _first_stage(_flat(ngrams), weights, ranges, index, config)
    return dict(zip(docs.tolist(), scores.tolist(), strict=True))


def _doc_scores(
    index: NgramIndex, docs: np.ndarray, order: np.ndarray, weights: np.ndarray, flat: Flat, beta: float
) -> np.ndarray:
    """Intersective score of each of ``docs`` (global numbers); ``sa`` shards are read in place."""
    offsets, tokens, local, n_local = flat
    out = np.zeros(len(docs), dtype=np.float64)
    shard_of = np.searchsorted(index.doc_starts, docs, side="right") - 1
    for s in np.unique(shard_of).tolist():
        rows = np.flatnonzero(shard_of == s)
        shard, first = index.shards[s], int(index.doc_starts[s])
        if isinstance(shard, SuffixArrayShard):  # text: token + 1, each document then a separator
            starts = np.asarray(shard.doc_starts, dtype=np.int64)
            text, shift, begins, ends = shard.text, 1, starts[docs[rows] - first], starts[docs[rows] - first + 1] - 1
        else:
            parts = [shard.doc_tokens(int(d) - first) for d in docs[rows].tolist()]
            lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
            ends = np.cumsum(lengths)
            begins = ends - lengths
            text = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
            shift = 0
        out[rows] = intersective_kernel(
            text, shift, begins, ends, order, weights, offsets, tokens, local, n_local, float(beta)
        )
    return out


def intersective(
    doc_tokens: np.ndarray,
    ngrams: list[tuple[int, ...]],
    weights: np.ndarray,
    by_first: dict[int, list[int]],
    beta: float,
) -> float:
    """One document's full score: greedy non-overlapping matches of the n-grams, best weight first.

    The n-grams matched are those ``by_first`` lists under their first token (``score_documents``
    lists every positive-weight one).
    """
    weights = np.asarray(weights, dtype=np.float64)
    listed = sorted({int(i) for t, ids in by_first.items() for i in ids if len(ngrams[i]) and ngrams[i][0] == t})
    if not listed:
        return 0.0
    keep = np.zeros(len(ngrams), dtype=bool)
    keep[listed] = True
    order = _best_first(weights, keep)
    tokens = np.asarray(doc_tokens, dtype=np.int64).reshape(-1)
    score = intersective_kernel(
        tokens,
        0,
        np.zeros(1, dtype=np.int64),
        np.array([len(tokens)], dtype=np.int64),
        order,
        weights,
        *_flat(ngrams),
        float(beta),
    )
    return float(score[0])


def _ranked(docs: np.ndarray, scores: np.ndarray) -> list[tuple[int, float]]:
    """``(document, score)`` by score descending, ties by document number."""
    order = np.lexsort((docs, -scores))
    return list(zip(docs[order].tolist(), scores[order].tolist(), strict=True))


def weighted_ngrams(
    ngrams: Sequence[Sequence[int]], logprobs: np.ndarray, index: NgramIndex, config: SealScoring
) -> tuple[list[tuple[int, ...]], np.ndarray, np.ndarray]:
    """``(distinct non-empty n-grams in first-seen order, their corpus counts, their weights)``; an n-gram
    generated more than once keeps its best log-probability."""
    keys, ranges, weights = _weighted(ngrams, logprobs, index, config)
    return keys, index.count(ranges) if keys else np.zeros(0, dtype=np.int64), weights


def _weighted(
    ngrams: Sequence[Sequence[int]], logprobs: np.ndarray, index: NgramIndex, config: SealScoring
) -> tuple[list[tuple[int, ...]], Ranges | None, np.ndarray]:
    """``weighted_ngrams`` with the n-grams' ranges (found once; the first stage locates from them)."""
    unique: dict[tuple[int, ...], float] = {}
    for g, lp in zip(ngrams, np.asarray(logprobs, dtype=np.float64).tolist(), strict=True):
        g = tuple(int(t) for t in g)
        if g and (g not in unique or lp > unique[g]):
            unique[g] = lp
    keys = list(unique)
    if not keys:
        return keys, None, np.zeros(0)
    ranges = index.find(keys)
    weights = ngram_weights(
        np.array([unique[g] for g in keys]), index.count(ranges), index.n_tokens, config.alpha, config.smoothing
    )
    return keys, ranges, weights


def score_documents(
    ngrams: Sequence[Sequence[int]], logprobs: np.ndarray, index: NgramIndex, config: SealScoring
) -> list[tuple[int, float]]:
    """Documents (global numbers) with their SEAL scores, best first, for one query's n-grams."""
    keys, ranges, weights = _weighted(ngrams, logprobs, index, config)
    if ranges is None:
        return []
    flat = _flat(keys)
    docs, scores = _first_stage(flat, weights, ranges, index, config)
    if not config.rescore or not len(docs):
        return _ranked(docs, scores)
    head = docs[np.lexsort((docs, -scores))[: config.fully_score]]  # as in SEAL, only these are returned:
    head = np.sort(head)  # their scores share one scale; read in document order
    rescored = _doc_scores(index, head, _best_first(weights, weights > 0), weights, flat, config.beta)
    return _ranked(head, rescored)
