"""``sa`` backend specifics not in the shared conformance suite (tests/indexing/test_ngram_shards.py)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexing.artifacts import ArtifactError
from indexing.ngrams.followers import BITMAP_MIN
from indexing.ngrams.sa import LINEAR_PROBES, SA_FILES, SA_JSON, SuffixArrayShard
from tests.indexing.ngrams.ngram_reference import all_ngrams, corpora, flatten, next_counts, occurrences


def build(docs: list[list[int]]) -> SuffixArrayShard:
    return SuffixArrayShard.build(*flatten(docs))


def rows(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def walk(shard: SuffixArrayShard, ngram: list[int]) -> tuple[int, int]:
    lo, hi = shard.root()
    for depth, token in enumerate(ngram):
        new_lo, new_hi = shard.extend(rows(lo), rows(hi), rows(depth), rows(token))
        lo, hi = int(new_lo[0]), int(new_hi[0])
    return lo, hi


def test_layout_tokens_plus_one_and_a_zero_after_every_document() -> None:
    docs = [[3, 0, 2], [], [7], [0, 0]]
    shard = build(docs)
    assert shard.text.tolist() == [4, 1, 3, 0, 0, 8, 0, 1, 1, 0]
    assert shard.doc_starts.tolist() == [0, 4, 5, 7, 10]
    assert shard.doc_lengths().tolist() == [3, 0, 1, 2]
    assert sorted(shard.suffixes.tolist()) == list(range(len(shard.text)))
    suffixes = [shard.text[p:].tolist() for p in shard.suffixes.tolist()]
    assert suffixes == sorted(suffixes)  # a true suffix array (a prefix sorts first)
    assert shard.max_token == 7


@pytest.mark.parametrize(("largest", "dtype"), [(65_533, np.uint16), (65_534, np.uint16), (65_535, np.int32)])
def test_text_dtype_switches_to_int32_above_65535_symbols(largest: int, dtype: type) -> None:
    """Symbols are token + 1, so the largest token that still fits uint16 is 65,534."""
    docs = [[largest, 1, largest], [0, largest, 1], [largest - 1]]
    shard = build(docs)
    assert shard.text.dtype == dtype
    for ngram in ([largest], [largest, 1], [1, largest], [largest - 1], [largest + 1], [0, largest, 1]):
        lo, hi = walk(shard, ngram)
        assert hi - lo == len(occurrences(docs, ngram)), ngram
    _, tokens, counts = shard.next_tokens(rows(shard.root()[0]), rows(shard.root()[1]), rows(0))
    assert dict(zip(tokens.tolist(), counts.tolist(), strict=True)) == next_counts(docs, [])
    assert [shard.doc_tokens(d).tolist() for d in range(3)] == docs


def test_root_skips_exactly_the_separator_suffixes() -> None:
    docs = [[5, 1], [], [2, 2, 2], [], [0]]
    shard = build(docs)
    lo, hi = shard.root()
    assert (lo, hi) == (5, 5 + 6)
    assert all(shard.text[p] == 0 for p in shard.suffixes[:lo])
    assert all(shard.text[p] != 0 for p in shard.suffixes[lo:hi])
    offsets, found_docs, starts = shard.locate(rows(lo), rows(hi), rows(0), limit=100)
    assert sorted(zip(found_docs.tolist(), starts.tolist(), strict=True)) == occurrences(docs, [])


def test_long_runs_take_the_galloping_path() -> None:
    """Runs far longer than the linear probes (and of every length around them) count exactly."""
    rng = np.random.default_rng(3)
    docs = [[9] * n + [int(t)] for n in range(1, 3 * LINEAR_PROBES) for t in rng.integers(0, 4, 3)]
    docs += [[9] * 500, rng.integers(0, 50, 3000).tolist()]
    shard = build(docs)
    for ngram in ([], [9], [9, 9], [9] * 7, [9] * 20, [3], [3, 4]):
        lo, hi = walk(shard, ngram)
        offsets, tokens, counts = shard.next_tokens(rows(lo), rows(hi), rows(len(ngram)))
        assert dict(zip(tokens.tolist(), counts.tolist(), strict=True)) == next_counts(docs, ngram), ngram
        assert np.all(np.diff(tokens) > 0)


def test_zipf_corpus_unigram_and_bigram_followers_against_counting() -> None:
    rng = np.random.default_rng(4)
    tokens = rng.zipf(1.3, 40_000) % 3000
    offsets = np.concatenate([[0], np.cumsum(rng.integers(0, 120, 700))])
    offsets = np.concatenate([offsets[offsets < len(tokens)], [len(tokens)]])
    shard = SuffixArrayShard.build(tokens, offsets)
    doc_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    same_doc = doc_of[1:] == doc_of[:-1]
    bigrams = Counter(zip(tokens[:-1][same_doc].tolist(), tokens[1:][same_doc].tolist(), strict=True))
    trigram_ok = same_doc[1:] & same_doc[:-1]
    trigrams = Counter(tuple(tokens[s : s + 3].tolist()) for s in np.flatnonzero(trigram_ok))
    heads = [int(t) for t, _ in Counter(tokens.tolist()).most_common(6)]
    states = [walk(shard, [t]) for t in heads] + [walk(shard, [heads[0], heads[1]])]
    lo, hi = rows(*(s[0] for s in states)), rows(*(s[1] for s in states))
    offsets_out, found, counts = shard.next_tokens(lo, hi, rows(*[1] * len(heads), 2))
    for i, head in enumerate(heads):
        row = slice(offsets_out[i], offsets_out[i + 1])
        expected = {b: c for (a, b), c in bigrams.items() if a == head}
        assert dict(zip(found[row].tolist(), counts[row].tolist(), strict=True)) == expected
    row = slice(offsets_out[-2], offsets_out[-1])
    expected = {c: n for (a, b, c), n in trigrams.items() if (a, b) == (heads[0], heads[1])}
    assert dict(zip(found[row].tolist(), counts[row].tolist(), strict=True)) == expected


def test_next_tokens_output_grows_past_its_first_buffer() -> None:
    """Many wide rows in one call (thousands of distinct followers in all) stay exact and in row order."""
    docs = [list(range(d, 1200 + d)) for d in range(3)]
    shard = build(docs)
    lo, hi = shard.root()
    offsets, tokens, counts = shard.next_tokens(rows(lo, lo, hi, lo), rows(hi, hi, hi, hi), rows(0, 0, 0, 0))
    expected = next_counts(docs, [])
    assert np.diff(offsets).tolist() == [len(expected), len(expected), 0, len(expected)]
    for i in (0, 1, 3):
        row = slice(offsets[i], offsets[i + 1])
        assert dict(zip(tokens[row].tolist(), counts[row].tolist(), strict=True)) == expected


def test_out_of_range_rows_and_tokens_give_empty_results() -> None:
    docs = [[1, 2, 3, 1, 2], [2, 3]]
    shard = build(docs)
    n = len(shard.text)
    lo, hi = shard.root()
    bad_lo, bad_hi, bad_depth = rows(-5, 4, n + 3, lo, lo), rows(-1, 2, n + 9, hi, hi), rows(0, 0, 0, -1, 0)
    new_lo, new_hi = shard.extend(bad_lo, bad_hi, bad_depth, rows(1, 1, 1, 1, 1 << 62))
    assert (new_hi - new_lo).tolist() == [0] * 5
    offsets, tokens, _ = shard.next_tokens(bad_lo, bad_hi, bad_depth)
    assert offsets.tolist() == [0, 0, 0, 0, 0, 3] and tokens.tolist() == [1, 2, 3]  # only the root row is valid
    offsets, _, _ = shard.locate(bad_lo[:4], bad_hi[:4], bad_depth[:4], limit=10)
    assert offsets.tolist() == [0, 0, 0, 0, 0]
    new_lo, new_hi = shard.extend(rows(lo, lo, lo), rows(hi, hi, hi), rows(0, 0, 0), rows(-1, 4, 3))
    assert (new_hi - new_lo).tolist() == [0, 0, 2]  # -1 and ids above the largest token never match
    offsets, _, _ = shard.locate(rows(lo, lo), rows(hi, hi), rows(0, 0), limit=-3)
    assert offsets.tolist() == [0, 0, 0]


@pytest.mark.parametrize("mmap", [True, False])
def test_load_maps_the_arrays_and_answers_alike(mmap: bool, tmp_path) -> None:
    docs = [[70_000, 1, 2], [1, 2, 70_000, 1], []]
    shard = build(docs)
    shard.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*SA_FILES.values(), SA_JSON])
    loaded = SuffixArrayShard.load(tmp_path, mmap=mmap)
    for name in SA_FILES:
        array = getattr(loaded, name)
        assert isinstance(array, np.memmap) == mmap
        assert array.dtype == getattr(shard, name).dtype and np.array_equal(array, getattr(shard, name))
    assert loaded.text.dtype == np.int32 and loaded.max_token == 70_000
    assert loaded.nbytes() == shard.nbytes() == 10 * 4 + 10 * 4 + 4 * 8  # int32 text and suffixes, doc_starts
    for ngram in ([1, 2], [70_000, 1], [2, 70_000, 1, 2]):
        lo, hi = walk(loaded, ngram)
        assert hi - lo == len(occurrences(docs, ngram))
        _, found_docs, starts = loaded.locate(rows(lo), rows(hi), rows(len(ngram)), limit=10)
        assert sorted(zip(found_docs.tolist(), starts.tolist(), strict=True)) == occurrences(docs, ngram)


def test_load_refuses_damaged_or_inconsistent_files(tmp_path) -> None:
    shard = build([[1, 2, 3], [4]])
    shard.save(tmp_path)
    (tmp_path / SA_FILES["suffixes"]).unlink()
    with pytest.raises(ArtifactError, match="missing"):
        SuffixArrayShard.load(tmp_path)
    shard.save(tmp_path)
    info = json.loads((tmp_path / SA_JSON).read_text())
    (tmp_path / SA_JSON).write_text(json.dumps({**info, "n_tokens": 5}))
    with pytest.raises(ArtifactError, match="inconsistent"):
        SuffixArrayShard.load(tmp_path)
    (tmp_path / SA_JSON).write_text(json.dumps({k: v for k, v in info.items() if k != "max_token"}))
    with pytest.raises(ArtifactError, match="damaged"):
        SuffixArrayShard.load(tmp_path)
    (tmp_path / SA_JSON).write_text(json.dumps({**info, "format": 99}))
    with pytest.raises(ArtifactError, match="format"):
        SuffixArrayShard.load(tmp_path)


def test_build_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="token ids"):
        SuffixArrayShard.build(np.array([1, -2]), np.array([0, 2]))
    with pytest.raises(ValueError, match="token ids"):
        SuffixArrayShard.build(np.array([1, 1 << 24]), np.array([0, 2]))
    with pytest.raises(ValueError, match="doc_offsets"):
        SuffixArrayShard.build(np.array([1, 2]), np.array([0, 1]))
    with pytest.raises(ValueError, match="non-decreasing"):
        SuffixArrayShard.build(np.array([1, 2]), np.array([0, 2, 1, 2]))
    with pytest.raises(ValueError, match="integer"):
        SuffixArrayShard.build(np.array([1.0, 2.0]), np.array([0, 2]))


@settings(max_examples=60, deadline=None)
@given(docs=corpora(max_token=6, max_docs=8, max_len=16), data=st.data())
def test_occurs_is_extend_non_empty(docs: list[list[int]], data: st.DataObject) -> None:
    """``occurs`` (one binary search, for constraint checks) agrees with ``extend`` and with brute force."""
    shard = SuffixArrayShard.build(*flatten(docs))
    ngrams = [[]] + [list(g) for g in sorted(all_ngrams(docs, 3))][:30]
    states = []
    for g in ngrams:
        lo, hi = shard.root()
        for depth, t in enumerate(g):
            args = [np.array([v], dtype=np.int64) for v in (lo, hi, depth, t)]
            new_lo, new_hi = shard.extend(*args)
            lo, hi = int(new_lo[0]), int(new_hi[0])
        states.append((lo, hi, len(g)))
    rows = data.draw(st.lists(st.integers(0, len(states) - 1), min_size=1, max_size=80))
    tokens = np.array(data.draw(st.lists(st.integers(-1, 8), min_size=len(rows), max_size=len(rows))), np.int64)
    lo, hi, depth = (np.array([states[r][j] for r in rows], dtype=np.int64) for j in range(3))
    got = shard.occurs(lo, hi, depth, tokens)
    new_lo, new_hi = shard.extend(lo, hi, depth, tokens)
    assert got.tolist() == (new_hi > new_lo).tolist()
    for i, r in enumerate(rows):
        expected = tokens[i] >= 0 and bool(occurrences(docs, ngrams[r] + [int(tokens[i])]))
        assert bool(got[i]) == expected


@settings(max_examples=60, deadline=None)
@given(docs=corpora(max_token=6, max_docs=8, max_len=16), data=st.data())
def test_first_occurring_stops_at_the_needed_hits(docs: list[list[int]], data: st.DataObject) -> None:
    """``first_occurring`` marks, in candidate order, exactly the candidates that occur (brute force)
    up to the ``need``-th of them, and nothing after it: from binary searches and, for frequent
    n-grams, from follower bitmaps (``follower_bitmap_min`` drawn, 1 = every n-gram of 1-2 tokens)."""
    shard = SuffixArrayShard.build(*flatten(docs))
    shard.follower_bitmap_min = data.draw(st.sampled_from([1, 2, 4, BITMAP_MIN]))
    ngrams = [[]] + [list(g) for g in sorted(all_ngrams(docs, 3))][:20]
    n = data.draw(st.integers(1, 12))
    k = data.draw(st.integers(1, 70))  # more than LANES: several lockstep groups in one row
    picked = [ngrams[data.draw(st.integers(0, len(ngrams) - 1))] for _ in range(n)]
    candidates = np.array(
        data.draw(st.lists(st.lists(st.integers(-1, 8), min_size=k, max_size=k), min_size=n, max_size=n)),
        dtype=np.int64,
    )
    need = np.array(data.draw(st.lists(st.integers(0, k + 1), min_size=n, max_size=n)), dtype=np.int64)
    bounds = [walk(shard, g) for g in picked]
    lo, hi = (np.array([b[j] for b in bounds], dtype=np.int64) for j in range(2))
    depth = np.array([len(g) for g in picked], dtype=np.int64)
    got = shard.first_occurring(lo, hi, depth, candidates, need)
    for i, g in enumerate(picked):
        expected, hits = [], 0
        for t in candidates[i].tolist():
            ok = hits < need[i] and t >= 0 and bool(occurrences(docs, g + [t]))
            expected.append(ok)
            hits += ok
        assert got[i].tolist() == expected
