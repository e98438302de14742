"""DocidTrie against brute force: a Python set of all prefixes of every (id + eos) and a dict id -> doc."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexing.docids.base import Docids
from indexing.trie import DocidTrie

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ragged(ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(i) for i in ids])
    values = np.array([t for i in ids for t in i], dtype=np.int32)
    return offsets, values


class Brute:
    """The reference: every prefix of every id + eos, the next tokens of each, and id -> doc."""

    def __init__(self, ids: list[list[int]], eos: int) -> None:
        self.eos = eos
        self.doc = {tuple(i): d for d, i in enumerate(ids)}
        self.next: dict[tuple[int, ...], set[int]] = {}
        for i in ids:
            seq = (*i, eos)
            for k in range(len(seq) + 1):
                nxt = self.next.setdefault(seq[:k], set())
                if k < len(seq):
                    nxt.add(seq[k])

    def lookup(self, seq: list[int]) -> int:
        seq = list(seq)
        if seq and seq[-1] == self.eos:
            seq = seq[:-1]
        return self.doc.get(tuple(seq), -1)


def walk(trie: DocidTrie, prefixes: list[tuple[int, ...]]) -> np.ndarray:
    """States of many prefixes at once, stepping column by column."""
    states = trie.start(len(prefixes))
    width = max((len(p) for p in prefixes), default=0)
    for c in range(width):
        has = np.array([len(p) > c for p in prefixes])
        toks = np.array([p[c] if len(p) > c else 0 for p in prefixes], dtype=np.int64)
        states = np.where(has, trie.step(states, toks), states)
    return states


@st.composite
def id_sets(draw: st.DrawFn) -> tuple[list[list[int]], int, int]:
    """(ids, eos, vocab): a small alphabet so ids share prefixes; some ids are prefixes of others.

    Sometimes the alphabet is spread over a vocabulary above 65535 (int32 tokens, and 17-bit
    tokens pack only 3 columns per sort key, so rows tied on one key are refined by the next).
    """
    alphabet = draw(st.integers(2, 6))
    if draw(st.booleans()):
        vocab = alphabet + 1 + draw(st.integers(0, 2))
        eos = draw(st.integers(0, vocab - 1))
        tokens = [t for t in range(vocab) if t != eos][:alphabet]
    else:
        vocab = draw(st.integers(65_536, 140_000))
        picks = draw(st.lists(st.integers(0, vocab - 1), min_size=alphabet + 1, max_size=alphabet + 1, unique=True))
        eos, tokens = picks[0], picks[1:]
    base = draw(st.lists(st.lists(st.sampled_from(tokens), min_size=1, max_size=6), min_size=1, max_size=25))
    # add prefixes of some ids, so "an id that is a prefix of another" is common
    cuts = draw(st.lists(st.tuples(st.integers(0, len(base) - 1), st.integers(1, 5)), max_size=5))
    ids = base + [base[i][:k] for i, k in cuts if k < len(base[i])]
    unique = list({tuple(i): list(i) for i in ids}.values())
    order = draw(st.permutations(range(len(unique))))
    return [unique[i] for i in order], eos, vocab


def build(ids: list[list[int]], eos: int, vocab: int) -> DocidTrie:
    return DocidTrie.build(*ragged(ids), eos_token_id=eos, vocab_size=vocab)


def check_same(a: DocidTrie, b: DocidTrie) -> None:
    for name in ("first_child", "token", "leaf_nodes", "leaf_docs"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert (a.n_nodes, a.n_docs, a.eos_token_id, a.vocab_size, a.max_depth) == (
        b.n_nodes,
        b.n_docs,
        b.eos_token_id,
        b.vocab_size,
        b.max_depth,
    )


@SETTINGS
@given(id_sets())
def test_prefixes_allowed_and_step_match_brute_force(case: tuple[list[list[int]], int, int]) -> None:
    ids, eos, vocab = case
    trie, ref = build(ids, eos, vocab), Brute(ids, eos)
    prefixes = sorted(ref.next)
    assert trie.n_nodes == len(prefixes)
    assert trie.n_docs == len(ids)
    assert trie.max_depth == max(len(i) for i in ids) + 1

    states = walk(trie, prefixes)
    assert np.all(states >= 0)
    assert len(set(states.tolist())) == len(prefixes)  # one node per prefix

    row_offsets, toks = trie.allowed(states)
    mask = trie.allowed_mask(states)
    assert mask.shape == (len(prefixes), vocab)
    for r, p in enumerate(prefixes):
        row = toks[row_offsets[r] : row_offsets[r + 1]].tolist()
        assert row == sorted(ref.next[p])
        assert np.flatnonzero(mask[r]).tolist() == row

    # every token outside the allowed set (including out-of-range ones) leads to the dead state
    state_of = dict(zip(prefixes, states.tolist(), strict=True))
    candidates = sorted({t for i in ids for t in i} | {eos, -2, -1, 0, 1, vocab - 1, vocab, vocab + 1, 2**40})
    children = trie.step(states[:, None], np.array(candidates)[None, :])
    expected = [[state_of[(*p, t)] if t in ref.next[p] else -1 for t in candidates] for p in prefixes]
    assert children.tolist() == expected

    leaf = np.array([len(p) > 0 and p[-1] == eos for p in prefixes])
    assert np.array_equal(trie.is_leaf(states), leaf)
    expected_docs = [ref.doc[p[:-1]] if lf else -1 for p, lf in zip(prefixes, leaf, strict=True)]
    assert trie.doc(states).tolist() == expected_docs
    # leaves and only leaves have no allowed tokens
    assert np.array_equal(np.diff(row_offsets) == 0, leaf)


@SETTINGS
@given(id_sets(), st.data())
def test_lookup_matches_brute_force(case: tuple[list[list[int]], int, int], data: st.DataObject) -> None:
    ids, eos, vocab = case
    trie, ref = build(ids, eos, vocab), Brute(ids, eos)
    used = sorted({t for i in ids for t in i} | {eos, -1, vocab, 0})
    others = data.draw(st.lists(st.lists(st.sampled_from(used), max_size=8), max_size=20))
    for d, i in enumerate(ids):
        assert trie.lookup(i) == d
        assert trie.lookup([*i, eos]) == d
    for p in ref.next:
        assert trie.lookup(list(p)) == ref.lookup(list(p))
    for seq in others:
        expected = -1 if -1 in seq else ref.lookup(seq)
        assert trie.lookup(seq) == expected

    # batched: ids padded with -1, with eos and garbage after it, and the random sequences
    rows: list[list[int]] = [list(i) for i in ids] + [[*i, eos, 3, -1, 0] for i in ids]
    expected = list(range(len(ids))) * 2
    for seq in others:
        rows.append(seq)
        cut = seq.index(-1) if -1 in seq else len(seq)
        end = seq[:cut]
        if eos in end:
            end = end[: end.index(eos)]
        expected.append(ref.doc.get(tuple(end), -1))
    width = max(len(r) for r in rows) + 1
    matrix = np.full((len(rows), width), -1, dtype=np.int64)
    for r, seq in enumerate(rows):
        matrix[r, : len(seq)] = seq
    assert trie.lookup_batch(matrix).tolist() == expected
    # full-width rows without eos or padding are ids without their eos
    exact = np.array([i for i in ids if len(i) == width - 1] or [[0] * (width - 1)], dtype=np.int64)
    assert trie.lookup_batch(exact).tolist() == [ref.lookup(r) for r in exact.tolist()]


@SETTINGS
@given(id_sets())
def test_sequences_layout_and_save_load(case: tuple[list[list[int]], int, int]) -> None:
    ids, eos, vocab = case
    trie = build(ids, eos, vocab)

    offsets, values = trie.sequences()
    assert offsets.tolist() == ragged(ids)[0].tolist()
    assert [values[offsets[d] : offsets[d + 1]].tolist() for d in range(len(ids))] == ids

    # breadth-first CSR: root 0, children contiguous and sorted, first_child monotone
    fc, tok = trie.first_child, trie.token
    assert fc[0] == 1 and fc[-1] == trie.n_nodes and len(fc) == trie.n_nodes + 1
    assert np.all(np.diff(fc) >= 0)
    for u in range(trie.n_nodes):
        block = tok[fc[u] : fc[u + 1]].astype(np.int64)
        assert np.all(np.diff(block) > 0)
    parents = trie.parents()
    assert parents[0] == -1 and np.all(np.diff(parents[1:]) >= 0) and np.all(parents[1:] < np.arange(1, trie.n_nodes))
    assert np.all(np.diff(trie.depths()) >= 0)
    assert np.all(np.diff(trie.leaf_nodes) > 0)
    assert sorted(trie.leaf_docs.tolist()) == list(range(len(ids)))
    assert trie.token.dtype == (np.uint16 if vocab <= 65535 else np.int32) and trie.first_child.dtype == np.int32

    states = walk(trie, [tuple(i) for i in ids])
    with tempfile.TemporaryDirectory() as tmp:
        trie.save(Path(tmp))
        for mmap in (False, True):
            loaded = DocidTrie.load(Path(tmp), mmap=mmap)
            check_same(trie, loaded)
            assert np.array_equal(loaded.allowed_mask(states), trie.allowed_mask(states))
            assert np.array_equal(loaded.step(states, eos), trie.step(states, eos))
            assert [loaded.lookup(i) for i in ids] == list(range(len(ids)))
            assert loaded.sequences()[1].tolist() == values.tolist()


def test_small_example_layout() -> None:
    ids = [[3, 4], [3], [3, 4, 5], [2], [5, 5, 5]]
    trie = build(ids, eos=1, vocab=6)
    # level 1: 2 3 5 | level 2: (2) eos, (3) eos 4, (5) 5 | level 3: (2 eos) -, (3 eos) -, (3 4) eos 5 ...
    assert trie.token[1:4].tolist() == [2, 3, 5]
    assert trie.allowed(trie.start(1))[1].tolist() == [2, 3, 5]
    s = trie.step(trie.start(1), 3)
    assert trie.allowed(s)[1].tolist() == [1, 4]
    assert trie.doc(trie.step(s, 1)).tolist() == [1]
    assert trie.step(trie.step(s, 1), 4).tolist() == [-1]  # nothing after a leaf
    assert trie.max_depth == 4 and trie.n_docs == 5


def test_dead_states_stay_dead() -> None:
    trie = build([[2, 3], [3]], eos=1, vocab=5)
    dead = np.array([-1, -5, trie.n_nodes, trie.n_nodes + 10])
    for t in range(-1, 7):
        assert trie.step(dead, t).tolist() == [-1] * 4
    row_offsets, toks = trie.allowed(dead)
    assert row_offsets.tolist() == [0, 0, 0, 0, 0] and len(toks) == 0
    assert not trie.allowed_mask(dead).any()
    assert not trie.is_leaf(dead).any()
    assert trie.doc(dead).tolist() == [-1] * 4
    assert trie.step(trie.step(trie.start(3), [7, -3, 2**40]), 2).tolist() == [-1, -1, -1]


def test_step_broadcasts_and_keeps_shape() -> None:
    trie = build([[2, 3], [3], [2, 4]], eos=1, vocab=5)
    states = trie.start(6).reshape(2, 3)
    out = trie.step(states, np.array([2, 3, 4]))
    assert out.shape == (2, 3)
    assert out[0].tolist() == out[1].tolist() and out[0, 2] == -1
    assert trie.step(0, 2).shape == ()


def test_allowed_mask_vocab_size() -> None:
    trie = build([[2, 3], [3]], eos=1, vocab=5)
    mask = trie.allowed_mask(trie.start(4), vocab_size=8)
    assert mask.shape == (4, 8) and np.flatnonzero(mask[3]).tolist() == [2, 3]
    with pytest.raises(ValueError, match="smaller"):
        trie.allowed_mask(trie.start(1), vocab_size=4)
    # repeated and distinct states in one batch
    s = trie.step(trie.start(1), 2)[0]
    mask = trie.allowed_mask([0, s, 0, -1, s])
    assert [np.flatnonzero(r).tolist() for r in mask] == [[2, 3], [3], [2, 3], [], [3]]


def test_large_vocab_uses_int32_tokens() -> None:
    ids = [[70_000, 5], [70_000], [100_000, 65_535]]
    trie = build(ids, eos=2, vocab=100_001)
    assert trie.token.dtype == np.int32
    assert [trie.lookup(i) for i in ids] == [0, 1, 2]
    assert trie.lookup([70_000, 5, 2]) == 0 and trie.lookup([70_000 - 65_536 * 0 + 1]) == -1
    s = trie.step(trie.start(1), 100_000)
    assert trie.allowed(s)[1].tolist() == [65_535]
    assert trie.sequences()[1].tolist() == [70_000, 5, 70_000, 100_000, 65_535]


def test_empty_id_set() -> None:
    trie = DocidTrie.build(np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int32), 1, 4)
    assert trie.n_nodes == 1 and trie.n_docs == 0
    assert trie.step(trie.start(2), 1).tolist() == [-1, -1]
    assert trie.lookup([2]) == -1 and trie.lookup_batch(np.array([[2, -1]])).tolist() == [-1]
    offsets, values = trie.sequences()
    assert offsets.tolist() == [0] and len(values) == 0


def test_build_errors_name_documents() -> None:
    with pytest.raises(ValueError, match=r"document\(s\) 1 contains the end-of-id token 1"):
        build([[2, 3], [2, 1, 3]], eos=1, vocab=5)
    with pytest.raises(ValueError, match=r"empty identifier for document\(s\) 2"):
        build([[2, 3], [3], []], eos=1, vocab=5)
    with pytest.raises(ValueError, match="documents 0 and 3 have the same identifier"):
        build([[2, 3], [3], [2], [2, 3]], eos=1, vocab=5)
    with pytest.raises(ValueError, match="outside"):
        build([[2, 7]], eos=1, vocab=5)
    with pytest.raises(ValueError, match="outside"):
        build([[-2]], eos=1, vocab=5)
    with pytest.raises(ValueError, match="eos_token_id"):
        build([[2]], eos=5, vocab=5)
    with pytest.raises(ValueError, match="offsets"):
        DocidTrie.build(np.array([0, 2]), np.array([2, 3, 4]), 1, 5)


def test_load_refuses_damaged_folder(tmp_path: Path) -> None:
    from indexing.artifacts import ArtifactError, save_npy

    trie = build([[2, 3], [3]], eos=1, vocab=5)
    trie.save(tmp_path)
    save_npy(tmp_path, "trie_token.npy", trie.token[:-1])
    with pytest.raises(ArtifactError, match="token has shape"):
        DocidTrie.load(tmp_path)
    (tmp_path / "trie_leaf_docs.npy").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        DocidTrie.load(tmp_path)


def test_tensors_equal_arrays() -> None:
    torch = pytest.importorskip("torch")
    trie = build([[2, 3], [3], [2, 4, 4]], eos=1, vocab=5)
    tensors = trie.tensors()
    assert set(tensors) == {"first_child", "token", "leaf_nodes", "leaf_docs"}
    for name, tensor in tensors.items():
        assert tensor.device.type == "cpu"
        assert tensor.tolist() == getattr(trie, name).tolist()
    assert tensors["first_child"].dtype == torch.int64 and tensors["token"].dtype == torch.int32


def test_from_docids_and_progress() -> None:
    offsets, values = ragged([[5, 6], [5], [7, 5, 6]])
    docids = Docids(
        doc_ids=["a", "b", "c"],
        identifiers=["x-y", "x", "z-x-y"],
        offsets=offsets,
        values=values,
        eos_token_id=1,
        base_vocab_size=2,
        new_tokens=["t2", "t3", "t4", "t5", "t6", "t7"],
    )
    docids.check()
    trie = DocidTrie.from_docids(docids)
    assert trie.vocab_size == docids.vocab_size == 8 and trie.eos_token_id == 1
    assert [trie.lookup(docids.tokens(i)) for i in range(len(docids))] == [0, 1, 2]
    check_same(trie, DocidTrie.build(offsets, values, 1, 8, progress=True))
    assert "n_docs=3" in repr(trie) and trie.nbytes() > 0


def test_random_fixed_length_ids_round_trip() -> None:
    rng = np.random.default_rng(0)
    ids = np.unique(rng.integers(2, 50, size=(3000, 4)), axis=0)
    ids = ids[rng.permutation(len(ids))]
    offsets = np.arange(len(ids) + 1, dtype=np.int64) * 4
    trie = DocidTrie.build(offsets, ids.ravel(), eos_token_id=1, vocab_size=50)
    assert trie.lookup_batch(ids).tolist() == list(range(len(ids)))
    assert np.array_equal(trie.sequences()[1], ids.ravel())
    prefixes = {tuple(r[:k]) for r in ids.tolist() for k in range(5)}
    assert trie.n_nodes == len(prefixes) + len(ids)
