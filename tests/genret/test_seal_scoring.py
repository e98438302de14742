"""SEAL's n-gram weights, first stage and intersective rescoring against answers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genret.retrievers.seal_scoring import (
    SealScoring,
    first_stage,
    intersective,
    ngram_weights,
    repetition,
    score_documents,
)
from indexing.ngrams import NgramIndex

DOCS = [[1, 2, 3, 4], [1, 2, 5], [3, 4, 3, 4], [7, 8, 8, 7]]
NGRAMS = [(1, 2), (3, 4), (2, 3), (5,), (7, 8), (8, 7)]
WEIGHTS = np.array([4.0, 3.0, 2.0, 1.0, 2.0, 1.0])


@pytest.fixture(scope="module", params=["sa", "fm"])
def index(request) -> NgramIndex:
    return NgramIndex.from_token_lists(DOCS, backend=request.param, shard_tokens=6)


def test_weights_are_seal_log_odds() -> None:
    s_r, count, n_tokens, smoothing = -2.0, 3, 1000, 5.0
    s_nr = math.log((count + smoothing) / (n_tokens + smoothing))
    odds = (s_r + math.log(1 - math.exp(s_nr))) - (s_nr + math.log(1 - math.exp(s_r)))
    got = ngram_weights(np.array([s_r, s_r, -12.0, 0.0]), np.array([count, 0, count, count]), n_tokens, 2.0, smoothing)
    assert got[0] == pytest.approx(odds**2)
    assert got[1] == 0.0  # does not occur
    assert got[2] == 0.0  # less likely under the model than in the corpus: clipped
    assert math.isfinite(got[3]) and got[3] > got[0]  # log P = 0 would divide by zero; clipped to -1e-10
    assert ngram_weights(np.array([s_r]), np.array([count]), n_tokens, 1.0, smoothing)[0] == pytest.approx(odds)


def test_repetition_penalty() -> None:
    assert repetition((1, 2), 4.0, set(), 0.8) == 4.0
    assert repetition((1, 2), 4.0, {1}, 0.8) == pytest.approx(4.0 * (0.2 + 0.8 * 0.5))
    assert repetition((1, 1, 2), 4.0, {1, 2}, 0.8) == pytest.approx(4.0 * 0.2)


def test_first_stage_by_hand(index: NgramIndex) -> None:
    counts = index.count(index.find(NGRAMS))
    assert counts.tolist() == [2, 3, 1, 1, 1, 1]
    scores = first_stage(NGRAMS, WEIGHTS, counts, index, SealScoring())
    # doc 0: (1,2) 4, then (3,4) 3 with no token seen; (2,3) overlaps both positions already taken
    # doc 1: (1,2) 4, (5,) 1; doc 2: (3,4) twice, counted once; doc 3: (7,8) 2, (8,7) 2 positions
    # free but both tokens seen: 1 * (1 - 0.8)
    assert scores == pytest.approx({0: 7.0, 1: 5.0, 2: 3.0, 3: 2.2})
    rare_only = first_stage(NGRAMS, WEIGHTS, counts, index, SealScoring(max_hits=2))
    assert rare_only == pytest.approx({0: 4.0, 1: 5.0, 3: 2.2})  # (3,4) occurs 3 times: not located
    limited = first_stage(NGRAMS, WEIGHTS, counts, index, SealScoring(max_hits=1))
    assert limited == pytest.approx({0: 2.0, 1: 1.0, 3: 2.2})


def test_intersective_by_hand() -> None:
    weights = np.array([4.0, 3.0, 2.0, 1.0, 1.0])
    ngrams = [(1, 2), (3, 4), (2, 3), (5,), (4, 3)]
    by_first: dict[int, list[int]] = {}
    for i, g in enumerate(ngrams):
        by_first.setdefault(g[0], []).append(i)
    assert intersective(np.array([1, 2, 3, 4]), ngrams, weights, by_first, 0.8) == pytest.approx(7.0)
    assert intersective(np.array([3, 4, 3, 4]), ngrams, weights, by_first, 0.8) == pytest.approx(3.0)
    assert intersective(np.array([2, 3, 9, 4, 3]), ngrams, weights, by_first, 0.8) == pytest.approx(2.0 + 1.0 * 0.6)
    assert intersective(np.array([], dtype=np.int64), ngrams, weights, by_first, 0.8) == 0.0


def test_score_documents_composes_the_stages(index: NgramIndex) -> None:
    logprobs = np.array([-0.01, -0.05, -0.2, -0.03, -0.02, -0.1])
    counts = index.count(index.find(NGRAMS))
    config = SealScoring(rescore=False)
    weights = ngram_weights(logprobs, counts, index.n_tokens, config.alpha, config.smoothing)
    assert (weights > 0).all()
    expected = first_stage(NGRAMS, weights, counts, index, config)
    got = score_documents([list(g) for g in NGRAMS] + [[1, 2], [], [9, 9]], np.concatenate([logprobs, [-5, 0, -1]]),
                          index, config)
    assert dict(got) == pytest.approx(expected)  # a repeated n-gram keeps its best log-probability; [] and
    assert [d for d, _ in got] == sorted(expected, key=lambda d: -expected[d])  # n-grams not in the corpus add 0
    full = score_documents([list(g) for g in NGRAMS], logprobs, index, SealScoring(fully_score=2))
    assert len(full) == 2 and {d for d, _ in full} == {d for d, _ in got[:2]}
    by_first: dict[int, list[int]] = {}
    for i, g in enumerate(NGRAMS):
        by_first.setdefault(g[0], []).append(i)
    for doc, score in full:
        assert score == pytest.approx(intersective(np.array(DOCS[doc]), NGRAMS, weights, by_first, 0.8))
    assert score_documents([], np.zeros(0), index, SealScoring()) == []
