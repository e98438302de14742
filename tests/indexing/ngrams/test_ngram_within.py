"""NgramIndex restricted to document sets (indexing/ngrams/within.py) against brute force, both backends, one and
several shards, each way of answering (scan, filter, auto)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexing.ngrams import NgramIndex
from indexing.ngrams.within import all_docs, doc_bits, doc_lists, set_sizes, words_for
from tests.indexing.ngrams.ngram_reference import all_ngrams, corpora, next_counts

HYPOTHESIS = settings(max_examples=40, deadline=None)
BACKENDS = ["sa", "fm"]


def followers_in(docs: list[list[int]], ngram: list[int], subset: list[int]) -> dict[int, int]:
    """Token -> how often it follows ``ngram`` inside the documents ``subset``."""
    return next_counts([docs[d] if d in subset else [] for d in range(len(docs))], ngram)


def holding(docs: list[list[int]], ngram: list[int], subset: list[int]) -> list[int]:
    m = len(ngram)
    return [d for d in subset if not m or any(docs[d][s : s + m] == ngram for s in range(len(docs[d]) - m + 1))]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shard_tokens", [1 << 20, 5])
@HYPOTHESIS
@given(docs=corpora(max_docs=9), data=st.data())
def test_followers_and_docs_within_match_brute_force(
    backend: str, shard_tokens: int, docs: list[list[int]], data: st.DataObject
) -> None:
    index = NgramIndex.from_token_lists(docs, backend=backend, shard_tokens=shard_tokens)
    present = sorted(all_ngrams(docs, 3))
    grams = [[]] + [list(g) for g in data.draw(st.lists(st.sampled_from(present), max_size=6))] if present else [[]]
    grams += data.draw(st.lists(st.lists(st.integers(0, 6), min_size=1, max_size=3), max_size=3))  # mostly absent
    subsets = [sorted(data.draw(st.sets(st.integers(0, len(docs) - 1)))) for _ in grams]
    ranges = index.find(grams)
    bits = doc_bits(subsets, len(docs))
    for method in ("auto", "scan", "filter"):
        offsets, tokens, counts = index.followers_within(ranges, bits, method)
        for i, (gram, subset) in enumerate(zip(grams, subsets, strict=True)):
            row = slice(offsets[i], offsets[i + 1])
            found = dict(zip(tokens[row].tolist(), counts[row].tolist(), strict=True))
            assert found == followers_in(docs, gram, subset)
            assert list(tokens[row]) == sorted(tokens[row])
        found = doc_lists(index.docs_within(ranges, bits, method))
        assert [f.tolist() for f in found] == [holding(docs, g, s) for g, s in zip(grams, subsets, strict=True)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_document_restricts_to_the_plain_index(backend: str) -> None:
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 30, size=rng.integers(0, 40)).tolist() for _ in range(150)]
    index = NgramIndex.from_token_lists(docs, backend=backend)
    grams = [[]] + [docs[d][s : s + 2] for d, s in [(3, 0), (7, 5), (40, 1)] if len(docs[d]) > s + 2]
    ranges = index.find(grams)
    offsets, tokens, counts = index.followers_within(ranges, all_docs(len(grams), len(docs)))
    plain = index.next_tokens_csr(ranges)
    assert np.array_equal(offsets, plain[0]) and np.array_equal(tokens, plain[1]) and np.array_equal(counts, plain[2])


def test_doc_sets_round_trip_and_refuse_bad_numbers() -> None:
    sets = [[], [0], [63, 64, 129], list(range(130))]
    bits = doc_bits(sets, 130)
    assert bits.shape == (4, words_for(130)) == (4, 3)
    assert [d.tolist() for d in doc_lists(bits)] == sets
    assert set_sizes(bits).tolist() == [0, 1, 3, 130]
    assert np.array_equal(all_docs(2, 130), bits[[3, 3]])
    with pytest.raises(ValueError, match="0..129"):
        doc_bits([[130]], 130)
    index = NgramIndex.from_token_lists([[1, 2]])
    with pytest.raises(ValueError, match="document sets of shape"):
        index.docs_within(index.root(2), doc_bits([[0]], 1))
    with pytest.raises(ValueError, match="method"):
        index.docs_within(index.root(1), doc_bits([[0]], 1), method="fast")
