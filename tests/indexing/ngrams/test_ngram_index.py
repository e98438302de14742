"""NgramIndex (shards presented as one index) against brute force, for both backends and several shardings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexing.artifacts import ArtifactError
from indexing.corpus import load_corpus
from indexing.ngrams import NgramIndex, Ranges
from indexing.ngrams.sa import SuffixArrayShard
from indexing.tokenizer import load_tokenizer
from tests.indexing.ngrams.ngram_reference import all_ngrams, corpora, next_counts, occurrences

TINY = Path(__file__).resolve().parents[2] / "fixtures" / "tiny_beir"
BACKENDS = ["sa", "fm"]


def check_against_brute_force(index: NgramIndex, docs: list[list[int]], ngrams: list[list[int]]) -> None:
    ranges = index.find(ngrams)
    assert index.count(ranges).tolist() == [len(occurrences(docs, g)) for g in ngrams]
    assert ranges.depth.tolist() == [len(g) for g in ngrams]
    for g, (tokens, counts) in zip(ngrams, index.next_tokens(ranges), strict=True):
        assert tokens.tolist() == sorted(tokens.tolist())
        assert dict(zip(tokens.tolist(), counts.tolist(), strict=True)) == next_counts(docs, g)
    for g, (found, starts) in zip(ngrams, index.locate(ranges, limit=10_000), strict=True):
        assert sorted(zip(found.tolist(), starts.tolist(), strict=True)) == occurrences(docs, g)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40, deadline=None)
@given(docs=corpora(max_docs=8), shard_tokens=st.sampled_from([1, 3, 7, 1 << 30]), data=st.data())
def test_sharded_index_matches_brute_force(
    backend: str, docs: list[list[int]], shard_tokens: int, data: st.DataObject
) -> None:
    index = NgramIndex.from_token_lists(docs, backend=backend, shard_tokens=shard_tokens)
    assert index.n_docs == len(docs) and index.n_tokens == sum(map(len, docs))
    assert index.doc_lengths().tolist() == [len(d) for d in docs]
    assert [index.doc_tokens(d).tolist() for d in range(len(docs))] == docs
    present = [list(g) for g in sorted(all_ngrams(docs, 3))]
    ngrams = [[]] + data.draw(st.lists(st.sampled_from(present), max_size=10) if present else st.just([]))
    ngrams += data.draw(st.lists(st.lists(st.integers(0, 6), min_size=1, max_size=3), max_size=5))
    check_against_brute_force(index, docs, ngrams)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40, deadline=None)
@given(
    docs=corpora(max_docs=8),
    shard_tokens=st.sampled_from([3, 1 << 30]),
    bitmap_min=st.sampled_from([1, 10**9]),
    data=st.data(),
)
def test_decoding_checks_match_brute_force(
    backend: str, docs: list[list[int]], shard_tokens: int, bitmap_min: int, data: st.DataObject
) -> None:
    """occurs / first_occurring / follower_table, what a decoding constraint asks: whether each candidate token
    continues a row's n-gram, on one shard (sa: early stops and follower bitmaps) and on several."""
    index = NgramIndex.from_token_lists(docs, backend=backend, shard_tokens=shard_tokens)
    for shard in index.shards:
        if isinstance(shard, SuffixArrayShard):
            shard.follower_bitmap_min = bitmap_min  # 1: every short n-gram has a bitmap; 10**9: none
    present = [list(g) for g in sorted(all_ngrams(docs, 2))]
    ngrams = [[]] + data.draw(st.lists(st.sampled_from(present), max_size=6) if present else st.just([]))
    ranges = index.find(ngrams)
    k = 7
    candidates = np.array(
        data.draw(
            st.lists(st.lists(st.integers(-1, 7), min_size=k, max_size=k), min_size=len(ngrams), max_size=len(ngrams))
        ),
        dtype=np.int64,
    )
    truth = np.array(
        [
            [t >= 0 and len(occurrences(docs, g + [t])) > 0 for t in row]
            for g, row in zip(ngrams, candidates.tolist(), strict=True)
        ],
        dtype=bool,
    ).reshape(-1, k)
    rows = np.arange(len(ngrams))
    assert index.occurs(ranges, np.repeat(rows, k), candidates.reshape(-1)).reshape(-1, k).tolist() == truth.tolist()
    need = np.array(data.draw(st.lists(st.integers(0, k), min_size=len(ngrams), max_size=len(ngrams))), dtype=np.int64)
    got = index.first_occurring(ranges, rows, candidates, need)
    assert not (got & ~truth).any()  # never a candidate that does not continue the n-gram
    for i in range(len(ngrams)):  # every true candidate up to the need-th one is reported
        upto = np.flatnonzero(truth[i])[: need[i]]
        assert got[i, upto].all()
    table = index.follower_table()
    assert (table is not None) == (backend == "sa" and index.n_shards == 1)
    if table is not None:
        at = table.rows(ranges.lo[:, 0], ranges.hi[:, 0], ranges.depth)
        for i, g in enumerate(ngrams):
            if at[i] >= 0:  # a bitmap row holds exactly the n-gram's followers
                bits = np.unpackbits(table.bits[at[i]].view(np.uint8), bitorder="little")
                assert set(np.flatnonzero(bits).tolist()) == set(next_counts(docs, g))
    assert index.select_width == type(index.shards[0]).select_width > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_extend_keeps_each_row_and_reorders_like_a_cache(backend: str) -> None:
    docs = [[1, 2, 3, 1, 2], [2, 3], [], [1, 2, 4]]
    index = NgramIndex.from_token_lists(docs, backend=backend, shard_tokens=4)
    assert len(index.shards) > 1
    r = index.extend(index.root(3), np.array([1, 2, 9]))
    r = index.extend(r, np.array([2, 3, 1]))
    assert index.count(r).tolist() == [3, 2, 0] and r.depth.tolist() == [2, 2, 2]
    swapped = r[np.array([1, 0, 0])]
    assert index.count(swapped).tolist() == [2, 3, 3]
    grown = index.extend(swapped, np.array([1, 3, 4]))  # [2,3,1] [1,2,3] [1,2,4]
    assert index.count(grown).tolist() == [1, 1, 1]
    assert index.count(index.find([[2, 3, 1], [1, 2, 3], [1, 2, 4]])).tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="one token per row"):
        index.extend(r, np.array([1]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_locate_limit_spans_shards_in_order(backend: str) -> None:
    docs = [[5, 5], [5], [7, 5], [5, 5, 5]]
    index = NgramIndex.from_token_lists(docs, backend=backend, shard_tokens=2)
    ranges = index.find([[5], [5, 5], [8]])
    for limit in range(0, 9):
        for g, (found, starts) in zip([[5], [5, 5], [8]], index.locate(ranges, limit), strict=True):
            pairs = list(zip(found.tolist(), starts.tolist(), strict=True))
            expected = occurrences(docs, g)
            assert len(pairs) == min(limit, len(expected)) and set(pairs) <= set(expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_load_round_trip_and_damage_is_refused(backend: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    docs = [rng.integers(0, 12, rng.integers(0, 25)).tolist() for _ in range(30)]
    index = NgramIndex.from_token_lists(docs, backend=backend, doc_ids=[f"d{i}" for i in range(30)], shard_tokens=150)
    for shard in index.shards:  # searched before the save (as a trained retriever is): its caches are not saved
        if isinstance(shard, SuffixArrayShard):
            shard.follower_bitmap_min = 1  # every 1-2-gram gets a bitmap: the table is not empty
            assert shard.followers().nbytes() > 0
    out = index.save(tmp_path / "ng")
    loaded = NgramIndex.load(out)
    assert loaded.doc_ids == index.doc_ids and loaded.backend == backend
    assert len(loaded.shards) == len(index.shards) > 1
    check_against_brute_force(loaded, docs, [[]] + [list(g) for g in sorted(all_ngrams(docs, 2))])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["tokens"] == sum(map(len, docs))
    victim = next(p for p in sorted(out.rglob("*.npy")))
    raw = bytearray(victim.read_bytes())
    raw[-1] ^= 0xFF
    victim.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError):
        NgramIndex.load(out)


@pytest.mark.parametrize("backend", BACKENDS)
def test_build_from_corpus_with_and_without_title_view(backend: str) -> None:
    corpus = load_corpus(TINY, progress=False)
    tok = load_tokenizer("minilm")
    plain = NgramIndex.build(corpus, tok, backend=backend, progress=False, batch_size=7)
    assert plain.doc_ids == list(corpus["_id"]) and plain.n_docs == len(corpus)
    first = tok.encode(corpus[0]["title"] + " " + corpus[0]["text"])
    assert plain.doc_tokens(0).tolist() == first
    begin, end = 1, 2  # [unused0], [unused1] in the MiniLM vocabulary
    titled = NgramIndex.build(
        corpus, tok, backend=backend, title_markers=(begin, end), progress=False, shard_tokens=300
    )
    assert len(titled.shards) > 1
    title = tok.encode(corpus[3]["title"])
    assert titled.doc_tokens(3).tolist() == [begin, *title, end, *tok.encode(corpus[3]["text"])]
    ranges = titled.find([[begin, *title, end]])  # the title view: n-grams that start with `begin`
    docs, starts = titled.locate(ranges, limit=10)[0]
    assert docs.tolist() == [3] and starts.tolist() == [0]
    assert titled.config["title_markers"] == [begin, end]


def test_unknown_backend_and_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown n-gram index backend"):
        NgramIndex.from_token_lists([[1]], backend="bwt")
    with pytest.raises(ValueError, match="shard_tokens"):
        NgramIndex.from_token_lists([[1]], shard_tokens=0)
    index = NgramIndex.from_token_lists([[1, 2]])
    with pytest.raises(IndexError, match="out of range"):
        index.doc_tokens(1)
    with pytest.raises(ValueError, match="limit"):
        index.locate(index.root(1), -1)
    with pytest.raises(ValueError):
        Ranges(np.zeros((2, 1), dtype=np.int64), np.zeros((2, 2), dtype=np.int64), np.zeros(2, dtype=np.int64))
