"""SEAL's n-gram weights, first stage and intersective rescoring against answers worked out by hand and
against the pure-Python reference (``benchmarks/seal_scoring_reference.py``); the no-model check."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from genret.retrievers.seal_check import check_ngrams, ngram_check_run, query_ngrams
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
    got = score_documents(
        [list(g) for g in NGRAMS] + [[1, 2], [], [9, 9]], np.concatenate([logprobs, [-5, 0, -1]]), index, config
    )
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


# ------------------------------------------------- against the pure-Python reference (benchmarks/)

REFERENCE_PATH = Path(__file__).resolve().parents[3] / "benchmarks" / "seal_scoring_reference.py"


@pytest.fixture(scope="module")
def reference():
    """The pure-Python scoring the numba kernels replaced (kept in benchmarks/ for this and the benchmark)."""
    spec = importlib.util.spec_from_file_location("seal_scoring_reference", REFERENCE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_case(rng: np.random.Generator) -> tuple[list[list[int]], list[list[int]], np.ndarray, SealScoring]:
    """A small corpus over a few tokens (many repeats and overlaps), n-grams mostly cut from it
    (some absent, some repeated, some empty), log-probabilities from a few values (many ties) and knobs."""
    vocab = int(rng.integers(2, 9))
    docs = [rng.integers(0, vocab, size=int(rng.integers(0, 30))).tolist() for _ in range(int(rng.integers(1, 13)))]
    ngrams = []
    for _ in range(int(rng.integers(0, 25))):
        doc = docs[int(rng.integers(len(docs)))]
        n = int(rng.integers(1, 6))
        if rng.random() < 0.85 and len(doc) >= n:
            start = int(rng.integers(len(doc) - n + 1))
            ngrams.append(doc[start : start + n])
        else:
            ngrams.append(rng.integers(0, vocab + 2, size=int(rng.integers(0, 4))).tolist())
    logprobs = rng.choice([0.0, -0.05, -0.5, -1.0, -2.0, -6.0, -20.0], size=len(ngrams))
    if rng.random() < 0.3:
        logprobs = logprobs + rng.normal(0, 0.01, size=len(ngrams))
    config = SealScoring(
        alpha=float(rng.choice([1.0, 2.0])),
        beta=float(rng.choice([0.0, 0.5, 0.8, 1.0])),
        smoothing=float(rng.choice([0.5, 5.0])),
        max_hits=int(rng.integers(0, 12)),
        fully_score=int(rng.integers(1, 15)),
        rescore=bool(rng.random() < 0.8),
    )
    return docs, ngrams, logprobs, config


def assert_same_ranking(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    assert [d for d, _ in got] == [d for d, _ in expected]
    assert np.allclose([s for _, s in got], [s for _, s in expected], rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("backend", ["sa", "fm"])
def test_same_scores_and_rankings_as_the_pure_python_reference(reference, backend: str) -> None:
    """Several hundred random corpora and n-gram sets: score_documents, first_stage and intersective
    give the reference's scores and rankings (ties by document number), on one shard or several."""
    rng = np.random.default_rng(7 if backend == "sa" else 8)
    cases = 300 if backend == "sa" else 100
    for case in range(cases):
        docs, ngrams, logprobs, config = random_case(rng)
        shard_tokens = int(rng.choice([10, 25, 1 << 20]))
        index = NgramIndex.from_token_lists(docs, backend=backend, shard_tokens=shard_tokens)
        got = score_documents(ngrams, logprobs, index, config)
        assert_same_ranking(got, reference.score_documents(ngrams, logprobs, index, config)), case
        keys = list(dict.fromkeys(tuple(g) for g in ngrams if g))
        if not keys:
            continue
        counts = index.count(index.find(keys))
        weights = np.where(counts > 0, rng.choice([0.0, 1.0, 2.0, 3.0], size=len(keys)), 0.0)  # ties, zeros
        new, old = (
            first_stage(keys, weights, counts, index, config),
            reference.first_stage(keys, weights, counts, index, config),
        )
        assert new.keys() == old.keys() and np.allclose([new[d] for d in old], list(old.values())), case
        by_first: dict[int, list[int]] = {}
        for i, g in enumerate(keys):
            if weights[i] > 0:
                by_first.setdefault(g[0], []).append(i)
        for doc in range(index.n_docs):
            tokens = index.doc_tokens(doc)
            assert intersective(tokens, keys, weights, by_first, config.beta) == pytest.approx(
                reference.intersective(tokens, keys, weights, by_first, config.beta), rel=1e-12, abs=0.0
            ), case


def test_intersective_takes_what_by_first_lists(reference) -> None:
    """Non-positive weights, n-grams listed twice or under a token they do not start with: as the reference."""
    ngrams = [(1, 2), (2,), (3, 1), (1,)]
    weights = np.array([2.0, 0.0, -1.0, 2.0])
    by_first = {1: [0, 0, 3, 2], 2: [1], 3: [2]}
    for doc in ([1, 2, 3, 1, 2], [3, 1, 1], [2, 2], []):
        tokens = np.array(doc, dtype=np.int64)
        assert intersective(tokens, ngrams, weights, by_first, 0.8) == pytest.approx(
            reference.intersective(tokens, ngrams, weights, by_first, 0.8)
        )
    assert intersective(np.array([1, 2]), ngrams, weights, {}, 0.8) == 0.0


# ------------------------------------------------------------------------------ the no-model check


def test_query_ngrams_shorter_first_then_by_start() -> None:
    assert query_ngrams([5, 6, 5, 6], max_n=3) == [(5,), (6,), (5, 6), (6, 5), (5, 6, 5), (6, 5, 6)]
    assert query_ngrams([], max_n=4) == [] and query_ngrams([1, 2], max_n=1) == [(1,), (2,)]


def test_ngram_check_run_scores_the_queries_own_corpus_ngrams(index: NgramIndex) -> None:
    class Tokens:
        def encode(self, text: str) -> list[int]:
            return [int(t) for t in text.split()]

    queries = {"a": "1 2 5", "b": "9 9", "c": "7 8 8"}
    found = check_ngrams(index, Tokens(), queries)
    assert found == {
        "a": [(1,), (2,), (5,), (1, 2), (2, 5), (1, 2, 5)],
        "b": [],
        "c": [(7,), (8,), (7, 8), (8, 8), (7, 8, 8)],
    }
    run = ngram_check_run(index, Tokens(), queries, k=1)
    expected = score_documents(found["a"], np.full(6, -1.0), index, SealScoring())
    assert run["a"] == {index.doc_ids[expected[0][0]]: expected[0][1]} and run["b"] == {}
    assert list(run["c"]) == ["3"]


DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
#: nDCG@10 of the no-model check (genret.retrievers.seal_check), measured with this code; it depends on
#: the order of equal-weight n-grams (shorter first here; a Python set's order gave 0.594 / 0.232)
CHECK_NDCG10 = {"scifact": 0.6088, "cranfield": 0.2343}
BAND = 0.02


@pytest.mark.parametrize("name", sorted(CHECK_NDCG10))
def test_no_model_check_ndcg_on_shared_collections(name: str, reference) -> None:
    """Each test query's own corpus n-grams of 1-4 MiniLM tokens, log-probability -1 each, SEAL's
    defaults, over the index the recipes build (sa, title markers (1, 2)): nDCG@10 in its band; on
    the first 20 queries the run equals the reference's."""
    folder = DATA / name
    if not folder.is_dir():
        pytest.skip(f"../shared/data/{name} not present")
    from genret.evaluation import evaluate
    from indexing.corpus import load_beir
    from indexing.tokenizer import load_tokenizer

    data = load_beir(folder, split="test")
    tokenizer = load_tokenizer("minilm")
    index = NgramIndex.build(data.corpus, tokenizer, backend="sa", title_markers=(1, 2), progress=False)
    run = ngram_check_run(index, tokenizer, data.queries, max_n=4, logprob=-1.0, k=100)
    assert set(run) == set(data.queries) and all(len(docs) <= 100 for docs in run.values())
    ndcg = evaluate(run, data.qrels, ("nDCG@10",))["nDCG@10"]
    assert abs(ndcg - CHECK_NDCG10[name]) <= BAND, ndcg
    for qid, ngrams in list(check_ngrams(index, tokenizer, data.queries).items())[:20]:
        expected = reference.score_documents(ngrams, np.full(len(ngrams), -1.0), index, SealScoring())[:100]
        assert run[qid] == pytest.approx({index.doc_ids[d]: s for d, s in expected}), qid
        assert list(run[qid]) == [index.doc_ids[d] for d, _ in expected]
