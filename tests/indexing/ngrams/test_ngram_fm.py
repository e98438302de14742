"""What only the ``fm`` backend has: SA sampling, alphabet compaction, its files and memory maps.

The shard operations themselves are checked against brute force for every backend in
test_ngram_shards.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexing.artifacts import ArtifactError, save_npy
from indexing.ngrams.fm import FMIndexShard
from indexing.ngrams.fm_kernels import NARROW_WIDTH
from indexing.ngrams.wavelet import levels_for
from tests.indexing.ngrams.ngram_reference import all_ngrams, corpora, flatten, next_counts, occurrences


def build(docs: list[list[int]], **kwargs: int) -> FMIndexShard:
    tokens, offsets = flatten(docs)
    return FMIndexShard.build(tokens, offsets, **kwargs)


def walk(shard: FMIndexShard, ngram: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lo, hi, depth)`` arrays of one row: ``ngram`` extended token by token from the root."""
    lo, hi = (np.array([v], dtype=np.int64) for v in shard.root())
    for depth, token in enumerate(ngram):
        lo, hi = shard.extend(lo, hi, np.array([depth]), np.array([token]))
    return lo, hi, np.array([len(ngram)], dtype=np.int64)


def random_docs(seed: int, n_docs: int = 40, vocab: int = 12, max_len: int = 40) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, rng.integers(0, max_len)).tolist() for _ in range(n_docs)]


@settings(max_examples=40, deadline=None)
@given(docs=corpora(), rate=st.integers(1, 9))
def test_sample_rate_changes_only_size_not_answers(docs: list[list[int]], rate: int) -> None:
    """Every sample rate locates the same occurrences in the same order; sparser samples take fewer bytes."""
    dense, sparse = build(docs, sample_rate=1), build(docs, sample_rate=rate)
    assert len(sparse.samples) == -(-sparse.n_rows // rate) and sparse.nbytes() <= dense.nbytes()
    for ngram in [[]] + [list(g) for g in sorted(all_ngrams(docs, 3))]:
        args = walk(dense, ngram)
        for a, b in zip(dense.locate(*args, limit=100), sparse.locate(*args, limit=100), strict=True):
            assert a.tolist() == b.tolist()


def test_sparse_huge_ids_are_compacted() -> None:
    """The wavelet matrix has ceil(log2(used ids + 2)) levels however large or sparse the ids are."""
    ids = [7, 10**9 + 7, 2**40, 2**62]
    docs = [[ids[3], ids[0], ids[1]], [ids[2], ids[3]], [], [ids[0], ids[0], ids[3]]]
    shard = build(docs)
    assert shard.alphabet.tolist() == ids and shard.wm_words.shape[0] == levels_for(len(ids) + 2) == 3
    for d, doc in enumerate(docs):
        assert shard.doc_tokens(d).tolist() == doc
    lo, hi, depth = walk(shard, [ids[3]])
    assert (hi - lo).tolist() == [3]
    _, tokens, counts = shard.next_tokens(lo, hi, depth)
    assert dict(zip(tokens.tolist(), counts.tolist(), strict=True)) == next_counts(docs, [ids[3]]) == {ids[0]: 1}
    unused = [-(2**62), -1, 0, 6, 8, 10**9 + 6, 2**40 + 1, 2**62 - 1, 2**62 + 1, 2**63 - 1]
    for start in ([], [ids[3]]):
        lo, hi, depth = walk(shard, start)
        n = len(unused)
        new_lo, new_hi = shard.extend(np.repeat(lo, n), np.repeat(hi, n), np.repeat(depth, n), np.array(unused))
        assert (new_hi == new_lo).all()


def test_id_values_do_not_change_the_index() -> None:
    """Dense small ids (lookup-table compaction) and the same ids scaled to huge sparse values (sorted
    compaction) give identical arrays: only the order of the ids matters."""
    docs = random_docs(3)
    small, huge = build(docs), build([[t * 10**12 + 5 for t in doc] for doc in docs])
    assert (huge.alphabet == small.alphabet * 10**12 + 5).all()
    for name, array in small.arrays.items():
        if name != "alphabet":
            assert np.array_equal(array, huge.arrays[name]), name


def test_depth_zero_counts_tokens_that_start_documents() -> None:
    """The empty n-gram's range skips the separator rows, yet extending it counts every occurrence,
    including a document's first token (which the BWT of the root rows alone would miss)."""
    docs = [[5], [5, 6], [6, 5]]
    shard = build(docs)
    assert shard.root() == (1 + len(docs), shard.n_rows)
    lo, hi, depth = walk(shard, [])
    _, tokens, counts = shard.next_tokens(lo, hi, depth)
    assert tokens.tolist() == [5, 6] and counts.tolist() == [3, 2]
    lo, hi, depth = walk(shard, [5])
    assert (hi - lo).tolist() == [3]
    _, found_docs, starts = shard.locate(*walk(shard, []), limit=100)
    assert sorted(zip(found_docs.tolist(), starts.tolist(), strict=True)) == occurrences(docs, [])


def test_wide_and_narrow_rows_in_large_batches() -> None:
    """Rows read symbol by symbol (narrow), by the wavelet descent (wider than fm.NARROW_WIDTH) and from C
    (depth 0), mixed in one batch whose answers outgrow the initial output buffer."""
    rng = np.random.default_rng(5)
    docs = []
    for _ in range(200):
        size = rng.integers(50, 150)
        docs.append(np.where(rng.random(size) < 0.3, rng.integers(0, 3, size), rng.integers(0, 3000, size)).tolist())
    shard = build(docs)
    ngrams = [[]] * 3 + [[0], [1, 0], [2]] + [[t] for t in range(3, 3000, 97)] + [[0, 1, 2], []]
    rows = [walk(shard, g) for g in ngrams]
    lo, hi, depth = (np.concatenate([r[i] for r in rows]) for i in range(3))
    assert (hi - lo)[3] > NARROW_WIDTH and (hi - lo)[6] <= NARROW_WIDTH
    offsets, tokens, counts = shard.next_tokens(lo, hi, depth)
    assert offsets[-1] > 4 * 1024
    for i, ngram in enumerate(ngrams):
        row = slice(offsets[i], offsets[i + 1])
        assert tokens[row].tolist() == sorted(tokens[row].tolist())
        assert dict(zip(tokens[row].tolist(), counts[row].tolist(), strict=True)) == next_counts(docs, ngram)


def test_garbage_ranges_give_empty_answers() -> None:
    shard = build(random_docs(4))
    n = shard.n_rows
    lo = np.array([-5, 3, n + 10, 0, 7, 2], dtype=np.int64)
    hi = np.array([-1, 2, n + 20, n, 9, n], dtype=np.int64)
    depth = np.array([1, 1, 1, -1, -3, 2], dtype=np.int64)
    new_lo, new_hi = shard.extend(lo, hi, depth, np.full(6, 3))
    assert (new_hi - new_lo)[[0, 1, 2, 3, 4]].tolist() == [0] * 5
    offsets, tokens, _ = shard.next_tokens(lo, hi, depth)
    assert offsets[5] == 0
    offsets, docs, starts = shard.locate(lo, hi, depth, limit=3)
    assert offsets[5] == 0 and offsets[6] == 3 and ((docs >= 0) & (docs < shard.n_docs)).all()


def test_memory_mapped_load_keeps_arrays_on_disk(tmp_path) -> None:
    docs = random_docs(6)
    shard = build(docs, sample_rate=5)
    shard.save(tmp_path)
    mapped, in_memory = FMIndexShard.load(tmp_path, mmap=True), FMIndexShard.load(tmp_path, mmap=False)
    assert mapped.sample_rate == 5 and mapped.nbytes() == in_memory.nbytes() == shard.nbytes()
    assert shard.nbytes() == sum(np.load(tmp_path / f"fm_{name}.npy").nbytes for name in shard.arrays)
    for name, array in mapped.arrays.items():
        assert isinstance(array.base, np.memmap) and not array.flags.writeable, name
        assert not isinstance(in_memory.arrays[name].base, np.memmap), name
    for ngram in [[]] + [list(g) for g in sorted(all_ngrams(docs, 2))[:100]]:
        args = walk(mapped, ngram)
        assert [a.tolist() for a in args] == [a.tolist() for a in walk(shard, ngram)]
        for a, b in zip(mapped.locate(*args, limit=10), in_memory.locate(*args, limit=10), strict=True):
            assert a.tolist() == b.tolist()
        for a, b in zip(mapped.next_tokens(*args), in_memory.next_tokens(*args), strict=True):
            assert a.tolist() == b.tolist()
    assert [mapped.doc_tokens(d).tolist() for d in range(len(docs))] == docs


def test_shard_without_documents_round_trips(tmp_path) -> None:
    shard = FMIndexShard.build(np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64))
    shard.save(tmp_path)
    loaded = FMIndexShard.load(tmp_path)
    assert loaded.n_docs == loaded.n_tokens == 0 and loaded.root() == (1, 1) and len(loaded.doc_lengths()) == 0
    offsets, tokens, _ = loaded.next_tokens(np.array([1]), np.array([1]), np.array([0]))
    assert offsets.tolist() == [0, 0] and len(tokens) == 0


def test_load_refuses_damaged_files(tmp_path) -> None:
    shard = build(random_docs(7))
    folders = [tmp_path / name for name in ("shape", "missing", "format")]
    for folder in folders:
        folder.mkdir()
        shard.save(folder)
    save_npy(folders[0], "fm_samples.npy", np.zeros(3, dtype=np.int32))
    with pytest.raises(ArtifactError, match="samples"):
        FMIndexShard.load(folders[0])
    (folders[1] / "fm_doc_rows.npy").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        FMIndexShard.load(folders[1])
    info = json.loads((folders[2] / "fm.json").read_text())
    (folders[2] / "fm.json").write_text(json.dumps({**info, "format": 99}))
    with pytest.raises(ArtifactError, match="format"):
        FMIndexShard.load(folders[2])


def test_build_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        FMIndexShard.build(np.array([1, -2]), np.array([0, 2]))
    with pytest.raises(ValueError):
        FMIndexShard.build(np.array([1, 2]), np.array([0, 3]))
    with pytest.raises(ValueError):
        FMIndexShard.build(np.array([1, 2, 3]), np.array([0, 2, 1, 3]))
    with pytest.raises(ValueError):
        FMIndexShard.build(np.array([1, 2]), np.array([0, 2]), sample_rate=0)
    with pytest.raises(ValueError):  # beyond int64
        FMIndexShard.build(np.array([1, 2**63 + 5], dtype=np.uint64), np.array([0, 2]))
