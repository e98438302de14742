"""``FollowerTable`` (the sa shard's follower bitmaps) against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexing.ngrams import followers as followers_module
from indexing.ngrams.followers import MAX_DEPTH
from indexing.ngrams.sa import SuffixArrayShard
from tests.indexing.ngrams.ngram_reference import all_ngrams, corpora, flatten, next_counts, occurrences
from tests.indexing.ngrams.test_ngram_sa import walk


def ngram_at(shard: SuffixArrayShard, key: int) -> tuple[int, ...]:
    lo, depth = divmod(key, MAX_DEPTH + 1)
    start = int(shard.suffixes[lo])
    return tuple((shard.text[start : start + depth].astype(np.int64) - 1).tolist())


@settings(max_examples=60, deadline=None)
@given(docs=corpora(max_token=6, max_docs=8, max_len=16), bitmap_min=st.integers(1, 6))
def test_bitmaps_are_the_frequent_ngrams_and_exactly_their_next_tokens(docs: list[list[int]], bitmap_min: int) -> None:
    """One bitmap per n-gram of 1 to MAX_DEPTH tokens seen >= bitmap_min times, keyed by its whole
    range, holding exactly the tokens that follow it (never across documents); ``rows`` finds it."""
    shard = SuffixArrayShard.build(*flatten(docs))
    shard.follower_bitmap_min = bitmap_min
    table = shard.followers()
    assert table.keys.tolist() == sorted(table.keys.tolist())
    got = {}
    for key, hi, row in zip(table.keys.tolist(), table.his.tolist(), table.bits, strict=True):
        ngram = ngram_at(shard, key)
        assert walk(shard, list(ngram)) == (key // (MAX_DEPTH + 1), hi)  # the n-gram's whole range
        got[ngram] = {u for u in range(8 * len(row)) if row[u >> 3] >> (u & 7) & 1}
    frequent = {g for g in all_ngrams(docs, MAX_DEPTH) if len(occurrences(docs, list(g))) >= bitmap_min}
    assert set(got) == frequent
    for g, follow in got.items():
        assert follow == set(next_counts(docs, list(g)))
    ngrams = [list(g) for g in all_ngrams(docs, MAX_DEPTH + 1)]
    bounds = np.array([walk(shard, g) for g in ngrams], dtype=np.int64).reshape(-1, 2)
    rows = table.rows(bounds[:, 0], bounds[:, 1], np.array([len(g) for g in ngrams], dtype=np.int64))
    for g, row in zip(ngrams, rows.tolist(), strict=True):
        assert (ngram_at(shard, int(table.keys[row])) == tuple(g)) if tuple(g) in frequent else row == -1


def test_the_budget_keeps_shorter_then_more_frequent_ngrams(monkeypatch: pytest.MonkeyPatch) -> None:
    """Within BITMAP_BYTES: unigrams before bigrams, the most frequent first; the shard's nbytes (its stored
    arrays, what a manifest counts) leaves the table out: a cache, never saved."""
    docs = [[0, 1, 0, 1, 0, 2], [0, 3, 3, 1, 0, 1]]  # unigrams 0:5, 1:4, 3:2, 2:1; bigram (0 1): 3
    shard = SuffixArrayShard.build(*flatten(docs))
    shard.follower_bitmap_min = 1
    before = shard.nbytes()
    monkeypatch.setattr(followers_module, "BITMAP_BYTES", 3)  # three rows of one byte (tokens 0-3)
    table = shard.followers()
    assert table.bits.shape == (3, 1)
    assert {ngram_at(shard, k) for k in table.keys.tolist()} == {(0,), (1,), (3,)}
    assert table.nbytes() > 0 and shard.nbytes() == before


def test_an_empty_shard_has_an_empty_table() -> None:
    shard = SuffixArrayShard.build(np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64))
    table = shard.followers()
    assert len(table.keys) == 0 and table.rows(np.array([0]), np.array([1]), np.array([1])).tolist() == [-1]
