"""Every operation of every n-gram store backend, against brute force (tests/indexing/ngram_reference.py).

One conformance suite for the shard interface (indexing/ngrams/base.py); each backend runs all of it.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexing.ngrams.base import NgramShard
from indexing.ngrams.fm import FMIndexShard
from indexing.ngrams.sa import SuffixArrayShard
from tests.indexing.ngrams.ngram_reference import all_ngrams, corpora, flatten, next_counts, occurrences, wide_corpora

BACKENDS = [pytest.param(SuffixArrayShard, id="sa"), pytest.param(FMIndexShard, id="fm")]
HYPOTHESIS = settings(max_examples=60, deadline=None)


def build(backend: type, docs: list[list[int]]) -> NgramShard:
    tokens, offsets = flatten(docs)
    return backend.build(tokens, offsets)


def walk(shard: NgramShard, ngram: list[int]) -> tuple[int, int]:
    """``(lo, hi)`` of ``ngram``, extended one token at a time from the root."""
    lo, hi = shard.root()
    for depth, token in enumerate(ngram):
        new_lo, new_hi = shard.extend(
            np.array([lo], dtype=np.int64),
            np.array([hi], dtype=np.int64),
            np.array([depth], dtype=np.int64),
            np.array([token], dtype=np.int64),
        )
        lo, hi = int(new_lo[0]), int(new_hi[0])
    return lo, hi


def probes(docs: list[list[int]], data: st.DataObject, max_len: int = 4) -> list[list[int]]:
    """N-grams that occur, random ones that mostly do not, and ones made to cross a document boundary."""
    present = sorted(all_ngrams(docs, max_len))
    picks = [list(g) for g in data.draw(st.lists(st.sampled_from(present), max_size=8))] if present else []
    tokens = sorted({t for d in docs for t in d} | {0, 1})
    picks += data.draw(st.lists(st.lists(st.sampled_from(tokens), min_size=1, max_size=max_len), max_size=8))
    for left, right in zip(docs, docs[1:], strict=False):  # the last token of a document, then the next one's first
        if left and right:
            picks.append([left[-1], right[0]])
    return picks


@pytest.mark.parametrize("backend", BACKENDS)
@HYPOTHESIS
@given(docs=corpora(), data=st.data())
def test_count_and_next_tokens_match_brute_force(backend: type, docs: list[list[int]], data: st.DataObject) -> None:
    shard = build(backend, docs)
    assert isinstance(shard, NgramShard)
    assert shard.n_docs == len(docs) and shard.n_tokens == sum(map(len, docs))
    lo, hi = shard.root()
    assert hi - lo == shard.n_tokens
    for ngram in [[]] + probes(docs, data):
        lo, hi = walk(shard, ngram)
        assert hi - lo == len(occurrences(docs, ngram)), ngram
        offsets, tokens, counts = shard.next_tokens(*(np.array([v], dtype=np.int64) for v in (lo, hi, len(ngram))))
        assert offsets.tolist() == [0, len(tokens)]
        assert tokens.tolist() == sorted(tokens.tolist())
        assert dict(zip(tokens.tolist(), counts.tolist(), strict=True)) == next_counts(docs, ngram), ngram


@pytest.mark.parametrize("backend", BACKENDS)
@HYPOTHESIS
@given(docs=corpora(), data=st.data())
def test_batched_calls_equal_one_row_calls(backend: type, docs: list[list[int]], data: st.DataObject) -> None:
    """A batch mixing depths, empty ranges and unknown tokens gives each row what it gets alone."""
    shard = build(backend, docs)
    ngrams = [[]] + probes(docs, data)
    states = [walk(shard, g) for g in ngrams]
    lo = np.array([s[0] for s in states], dtype=np.int64)
    hi = np.array([s[1] for s in states], dtype=np.int64)
    depth = np.array([len(g) for g in ngrams], dtype=np.int64)
    tokens = np.array(
        data.draw(st.lists(st.integers(-1, 7), min_size=len(ngrams), max_size=len(ngrams))), dtype=np.int64
    )
    new_lo, new_hi = shard.extend(lo, hi, depth, tokens)
    for i, ngram in enumerate(ngrams):
        expected = len(occurrences(docs, ngram + [int(tokens[i])])) if tokens[i] >= 0 else 0
        assert new_hi[i] - new_lo[i] == expected
    offsets, next_tok, counts = shard.next_tokens(lo, hi, depth)
    for i, ngram in enumerate(ngrams):
        row = slice(offsets[i], offsets[i + 1])
        assert dict(zip(next_tok[row].tolist(), counts[row].tolist(), strict=True)) == next_counts(docs, ngram)
    offsets, docs_found, starts = shard.locate(lo, hi, depth, limit=1000)
    for i, ngram in enumerate(ngrams):
        row = slice(offsets[i], offsets[i + 1])
        assert sorted(zip(docs_found[row].tolist(), starts[row].tolist(), strict=True)) == occurrences(docs, ngram)


@pytest.mark.parametrize("backend", BACKENDS)
@HYPOTHESIS
@given(docs=corpora(), data=st.data(), limit=st.integers(0, 4))
def test_locate_matches_brute_force(backend: type, docs: list[list[int]], data: st.DataObject, limit: int) -> None:
    shard = build(backend, docs)
    for ngram in probes(docs, data):
        lo, hi = walk(shard, ngram)
        args = (np.array([lo], dtype=np.int64), np.array([hi], dtype=np.int64), np.array([len(ngram)], dtype=np.int64))
        expected = occurrences(docs, ngram)
        offsets, found_docs, starts = shard.locate(*args, limit=10_000)
        assert sorted(zip(found_docs.tolist(), starts.tolist(), strict=True)) == expected
        offsets, found_docs, starts = shard.locate(*args, limit=limit)
        found = list(zip(found_docs.tolist(), starts.tolist(), strict=True))
        assert len(found) == min(limit, len(expected)) and set(found) <= set(expected)


@pytest.mark.parametrize("backend", BACKENDS)
@HYPOTHESIS
@given(docs=corpora())
def test_doc_tokens_and_lengths_round_trip(backend: type, docs: list[list[int]]) -> None:
    shard = build(backend, docs)
    assert shard.doc_lengths().tolist() == [len(d) for d in docs]
    for d, doc in enumerate(docs):
        assert shard.doc_tokens(d).tolist() == doc


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=30, deadline=None)
@given(docs=wide_corpora(), data=st.data())
def test_large_token_ids(backend: type, docs: list[list[int]], data: st.DataObject) -> None:
    """Ids beyond 16 bits (250k-style vocabularies) count, continue and locate like small ones."""
    shard = build(backend, docs)
    for ngram in [[]] + probes(docs, data, max_len=3):
        lo, hi = walk(shard, ngram)
        assert hi - lo == len(occurrences(docs, ngram))
        offsets, tokens, counts = shard.next_tokens(*(np.array([v], dtype=np.int64) for v in (lo, hi, len(ngram))))
        assert dict(zip(tokens.tolist(), counts.tolist(), strict=True)) == next_counts(docs, ngram)
    for d, doc in enumerate(docs):
        assert shard.doc_tokens(d).tolist() == doc


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_ngram_crosses_a_document_boundary(backend: type) -> None:
    docs = [[1, 2, 3], [4, 5], [], [3, 4], [5, 1]]
    shard = build(backend, docs)
    for ngram in ([3, 4, 5], [2, 3, 4], [5, 1, 2], [3, 4, 5, 1]):
        assert walk(shard, ngram)[1] - walk(shard, ngram)[0] == (1 if ngram == [3, 4] else 0)
    lo, hi = walk(shard, [3])  # 3 ends document 0 and starts document 3: only the latter continues
    offsets, tokens, counts = shard.next_tokens(*(np.array([v], dtype=np.int64) for v in (lo, hi, 1)))
    assert tokens.tolist() == [4] and counts.tolist() == [1]
    lo, hi = walk(shard, [3, 4])
    offsets, found_docs, starts = shard.locate(*(np.array([v], dtype=np.int64) for v in (lo, hi, 2)), limit=10)
    assert list(zip(found_docs.tolist(), starts.tolist(), strict=True)) == [(3, 0)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_corpus_and_empty_documents(backend: type) -> None:
    for docs in ([[]], [[], [], []]):
        shard = build(backend, docs)
        lo, hi = shard.root()
        assert hi == lo and shard.n_tokens == 0 and shard.doc_lengths().tolist() == [0] * len(docs)
        offsets, tokens, counts = shard.next_tokens(*(np.array([v], dtype=np.int64) for v in (lo, hi, 0)))
        assert len(tokens) == 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_round_trip(backend: type, mmap: bool, tmp_path) -> None:
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 20, rng.integers(0, 30)).tolist() for _ in range(40)]
    shard = build(backend, docs)
    if backend is SuffixArrayShard:  # a cache built by searching before the save is not part of what is saved
        shard.follower_bitmap_min = 1  # every 1-2-gram gets a bitmap: the table is not empty
        assert shard.followers().nbytes() > 0
    shard.save(tmp_path)
    loaded = backend.load(tmp_path, mmap=mmap)
    assert loaded.n_docs == shard.n_docs and loaded.n_tokens == shard.n_tokens and loaded.root() == shard.root()
    assert loaded.nbytes() == shard.nbytes()
    for ngram in [[]] + [list(g) for g in sorted(all_ngrams(docs, 3))[:200]]:
        lo, hi = walk(loaded, ngram)
        assert (lo, hi) == walk(shard, ngram)
        args = tuple(np.array([v], dtype=np.int64) for v in (lo, hi, len(ngram)))
        for a, b in zip(loaded.next_tokens(*args), shard.next_tokens(*args), strict=True):
            assert np.array_equal(a, b)
        for a, b in zip(loaded.locate(*args, limit=5), shard.locate(*args, limit=5), strict=True):
            assert np.array_equal(a, b)
    for d in range(len(docs)):
        assert loaded.doc_tokens(d).tolist() == docs[d]


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_corpus_against_brute_force(backend: type) -> None:
    """A larger corpus than hypothesis draws: every 1- to 3-gram's count, followers and locations."""
    rng = np.random.default_rng(1)
    docs = [rng.integers(0, 8, rng.integers(0, 60)).tolist() for _ in range(50)]
    shard = build(backend, docs)
    for ngram in sorted(all_ngrams(docs, 3)):
        ngram = list(ngram)
        lo, hi = walk(shard, ngram)
        args = tuple(np.array([v], dtype=np.int64) for v in (lo, hi, len(ngram)))
        assert hi - lo == len(occurrences(docs, ngram))
        _, tokens, counts = shard.next_tokens(*args)
        assert dict(zip(tokens.tolist(), counts.tolist(), strict=True)) == next_counts(docs, ngram)
        _, found_docs, starts = shard.locate(*args, limit=10_000)
        assert sorted(zip(found_docs.tolist(), starts.tolist(), strict=True)) == occurrences(docs, ngram)
